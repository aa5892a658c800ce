/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Probe point __nf_conntrack_confirm: a new ct's verdict, the clash outcome
 * (dropped, merged, or inserted reply-only) and, with --all, every new ct.
 */
#ifndef CTPROBE_POINT_CONFIRM_BPF_H
#define CTPROBE_POINT_CONFIRM_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "record.bpf.h"
#include "kernel_reads.bpf.h"
#include "pairing.bpf.h"
#include "history.bpf.h"
#include "filter.bpf.h"
#include "mode.bpf.h"
#include "winner.bpf.h"
#include "clash_pair.bpf.h"

static __always_inline void confirm_enter(struct call_key c, struct sk_buff *skb)
{
	struct nf_conn *ct = skb_ct(skb, NULL, false);
	struct entry *v;

	/* Never without a ct: nf_conntrack_confirm calls only for one. */
	if (!ct)
		return;
	v = save_entry(c, EVENT_CONFIRM);
	if (!v)
		return;
	v->skb = (__u64)skb;
	v->ct = (__u64)ct;
	read_tuple(&v->orig, &ct->tuplehash[0].tuple, false);
	read_tuple(&v->before, &ct->tuplehash[1].tuple, false);
	if (lookup_winner)
		index_candidate(ct, &v->orig, &v->before);
}

/* confirm_exit's clash-path form: the default mode and --all without a clash
 * probe (4.19-5.5). The winner of a race is found by tuple; --all also sends
 * every other new ct. */
static __always_inline int confirm_exit_clash_path(struct event *e, struct sk_buff *skb, bool settled,
						   const bool direct)
{
	if (!(settled || stream_confirms) || !wanted(e, e->pid_tgid >> 32))
		return 0;
	read_sender(e, skb, direct);
	if (settled)
		lookup_clash(e);
	output(e);
	return 0;
}

/* confirm_exit's timeline form (--timeline, with or without --all): e is the
 * outcome for v->ct, the ct that entered confirm, and cs the clash seen
 * inside this call, if any. A race replays the histories of the loser and
 * its winner. (A plain insert never gets here under --timeline alone:
 * confirm_kept keeps it; --all --timeline streams it and replays nothing.) */
static __always_inline int confirm_exit_timeline(struct event *e, const struct entry *v, struct clash_seen *cs,
						 bool freed, bool settled)
{
	__u64 winner = 0;
	bool race;

	if (!history_wanted(ct_history(v->ct), e))
		goto out;
	race = settled || cs;

	if (stream_all) {
		if (race && !cs && lookup_winner)
			lookup_clash(e);
		output(e);
	} else if (race) {
		if (!replay(v->ct, 0))
			count_loss(LOSS_NO_HISTORY);
		if (cs) {
			cs->clash.flags |= EVENT_F_HISTORY;
			output(&cs->clash);
			winner = cs->clash.other_ct;
		} else if (lookup_winner) {
			winner = lookup_clash(e);
		}
		if (!winner && e->other_ct != v->ct)
			winner = e->other_ct;
		if (winner && !replay(winner, EVENT_F_WINNER))
			count_loss(LOSS_NO_HISTORY);
		/* In a three-way race nf_ct_resolve_clash_harder may merge the loser
		 * into another entry than the one the clash named: replay that too. */
		if (e->other_ct != v->ct && e->other_ct != winner)
			replay(e->other_ct, EVENT_F_WINNER);
		output(e);
	}
	/* A dropped or merged loser is freed; keep nothing of it. */
	if (race && freed)
		hist_forget(v->ct);
out:
	if (cs)
		stored_delete(&clashes, &clashes_stored, &e->skb);
	return 0;
}

/*
 * The outcome, read without trusting IPS_CONFIRMED (set late since 2025,
 * after the hash insert: docs/kernel-notes.md, What confirm returns, per era):
 * ret NF_DROP is a drop; a different ct on the skb afterwards means the
 * packet was merged into the winner; IPS_NAT_CLASH on the same ct means a
 * reply-only insert (5.6+). A clash record (from nf_ct_resolve_clash) marks
 * the rest of the clashes. v is the ct that entered confirm, with its
 * tuples read while it was alive; cs the clash seen inside the call.
 *
 * The mode picks the form at run time; the mode globals are const volatile,
 * so the verifier prunes the other form.
 */
static __always_inline int confirm_outcome(const struct entry *v, struct clash_seen *cs, struct sk_buff *skb, int ret,
					   const bool direct)
{
	struct event *e;
	struct nf_conn *after;
	bool freed, settled;

	e = new_event(SCRATCH_CONFIRM, EVENT_CONFIRM, TASK_BY_CONFIRM);
	if (!e)
		return 0;
	after = skb_ct(skb, &e->ctinfo, direct);
	/* Status, netns, zone and mark come from the ct that now rides on the
	 * skb; the tuples are the loser's, saved while it was alive because a
	 * merged loser is freed before we return. */
	read_ct(e, after, false);
	e->ct = v->ct;
	e->orig = v->orig;
	e->reply = v->before;
	e->other_ct = (__u64)after;
	e->skb = (__u64)skb;
	e->ret = ret;
	read_sock(e, skb, direct);
	/* Dropped, merged, or inserted reply-only: the outcomes of a clash. A
	 * dropped or merged loser is freed. */
	freed = ret == NF_DROP || e->other_ct != v->ct;
	settled = freed || (e->status & IPS_NAT_CLASH);

	if (clash_path_only())
		return confirm_exit_clash_path(e, skb, settled, direct);
	return confirm_exit_timeline(e, v, cs, freed, settled);
}

/* --timeline alone: whether this call was a plain insert, which sends
 * nothing. The callers know that no clash was seen in it and that ct, on
 * the skb now, is the ct that entered (not merged); here it must not be
 * dropped or inserted reply-only. Its confirmation then goes straight into
 * the ct's history, built without an event, for when the ct wins a later
 * clash. No filter check: a ct has a history only if its birth passed the
 * filters, and confirm sees the same ct. */
static __always_inline bool confirm_kept(struct sk_buff *skb, struct nf_conn *ct, __u8 ctinfo, int ret,
					 const bool direct)
{
	struct confirm_step *s;
	struct history *h;
	struct sock *sk;
	__u64 status;

	if (stream_all || ret == NF_DROP)
		return false;
	status = BPF_CORE_READ(ct, status);
	if (status & IPS_NAT_CLASH)
		return false;
	h = ct_history((__u64)ct);
	if (!h)
		return true;
	s = &h->confirm;
	s->ts = bpf_ktime_get_ns();
	s->cpu = bpf_get_smp_processor_id();
	s->pid_tgid = bpf_get_current_pid_tgid();
	s->flags = (__u32)s->pid_tgid == 0 ? EVENT_F_SOFTIRQ_KEY : 0;
	read_task(TASK_BY_CONFIRM, s->pid_tgid, s->ts, &s->cgroup, s->comm);
	s->ctinfo = ctinfo;
	s->status = status;
	s->ret = ret;
	read_tuple(&s->reply, &ct->tuplehash[1].tuple, false);
	sk = KREAD(direct, skb, sk);
	if (sk) {
		s->flags |= EVENT_F_SOCK;
		READ_SK_AS(direct, s, sk);
	} else {
		s->sk_cookie = 0;
		s->sk_ino = 0;
		s->sk_port = 0;
		s->sk_family = 0;
		s->sk_state = 0;
	}
	h->have |= HIST_CONFIRM;
	return true;
}

/* confirm's exit after its entry, which saved the ct and its tuples; the
 * skb is fexit's argument where direct, else the one the entry saved. */
static __always_inline int confirm_exit(struct call_key c, struct sk_buff *skb, int ret, const bool direct)
{
	struct clash_seen *cs = NULL;
	struct entry v;

	if (!take_entry(c, EVENT_CONFIRM, &v))
		return 0;
	if (!direct)
		skb = (struct sk_buff *)v.skb;
	if (!clash_path_only()) {
		__u8 ctinfo;
		struct nf_conn *after = skb_ct(skb, &ctinfo, direct);

		cs = stored_lookup(&clashes, &clashes_stored, &v.skb);
		if (cs && cs->clash.ct != v.ct)
			cs = NULL; /* a stale record of an earlier packet at this skb address */
		if (!cs && after && (__u64)after == v.ct && confirm_kept(skb, after, ctinfo, ret, direct))
			return 0;
	}
	return confirm_outcome(&v, cs, skb, ret, direct);
}

/* Whether the clash record cs at this skb's address was made in this call
 * of confirm, which leaves ct on the skb. A record of an earlier packet at
 * the same address is left only where its confirm's exit did not run (the
 * probes attached mid-call, or the kernel skipped the program). This
 * packet's ct was born after such a record was made, while in this call
 * the clash came after the birth of the ct that rides on the skb now: the
 * loser's (dropped, or inserted reply-only) or its winner's (merged). Time
 * alone cannot tell: a starved CPU may take long between the two probes.
 * Without a history, the record must name ct as its loser or winner. */
static __always_inline bool clash_of_this_call(const struct clash_seen *cs, struct nf_conn *ct)
{
	struct history *h = ct_history((__u64)ct);

	if (h && (h->have & HIST_IN))
		return cs->clash.ts > h->in.ts;
	return (__u64)ct == cs->clash.ct || (__u64)ct == cs->clash.other_ct;
}

/* --timeline with the clash probe: confirm's exit alone (fexit sees the
 * skb). Which ct entered confirm, and its tuples, come from the clash
 * record when the call clashed (a merged loser is freed by now), else from
 * the ct on the skb, which is that ct still: a plain insert or a drop
 * without a clash keeps it there. No entry probe and no entries map for
 * the flows that do not clash. */
static __always_inline int confirm_exit_hist(struct sk_buff *skb, int ret)
{
	__u8 ctinfo;
	struct nf_conn *ct = skb_ct(skb, &ctinfo, true);
	struct entry v = {};
	struct clash_seen *cs;

	if (!ct)
		return 0;
	v.skb = (__u64)skb;
	cs = stored_lookup(&clashes, &clashes_stored, &v.skb);
	if (cs && !clash_of_this_call(cs, ct)) {
		stored_delete(&clashes, &clashes_stored, &v.skb);
		cs = NULL;
	}
	if (!cs && confirm_kept(skb, ct, ctinfo, ret, true))
		return 0;
	if (cs) {
		v.ct = cs->clash.ct;
		v.orig = cs->loser_orig;
		v.before = cs->loser_reply;
	} else {
		v.ct = (__u64)ct;
		read_tuple(&v.orig, &ct->tuplehash[0].tuple, false);
		read_tuple(&v.before, &ct->tuplehash[1].tuple, false);
	}
	return confirm_outcome(&v, cs, skb, ret, true);
}

/* --all with the clash probe: confirm's exit alone, without an entry probe.
 * A new ct that was not in a clash is not freed, so it is read here: its
 * REPLY tuple shows the NAT bindings. A clash seen inside (a pair from
 * nf_ct_resolve_clash's entry) is sent as that pair instead. */
static __always_inline int confirm_new(struct sk_buff *skb, int ret, const bool direct)
{
	__u64 key = (__u64)skb;
	struct clash_pair *p = stored_lookup(&pairs, &pairs_stored, &key);
	__u8 ctinfo;
	struct nf_conn *ct = skb_ct(skb, &ctinfo, direct);
	struct event *e;
	__u32 slot = SCRATCH_CONFIRM;

	if (!ct)
		return 0;
	if (p) {
		if (pair_of(p, ct)) {
			send_pair(p, key, skb, ret);
			return 0;
		}
		stored_delete(&pairs, &pairs_stored, &key);
	}
	e = bpf_map_lookup_elem(&scratch, &slot);
	if (!e)
		return 0;
	read_confirm(e, skb, ct, CT_SPAN_CONFIRM, TASK_BY_CONFIRM, direct);
	e->ctinfo = ctinfo;
	e->other_ct = e->ct;
	e->ret = ret;
	if (wanted(e, e->pid_tgid >> 32))
		output(e);
	return 0;
}

/* int __nf_conntrack_confirm(struct sk_buff *skb) -- exported, 4.19 to 6.18. */
SEC("fentry/__nf_conntrack_confirm")
int BPF_PROG(fentry_confirm, struct sk_buff *skb)
{
	confirm_enter(object_call(skb), skb);
	return 0;
}

SEC("fexit/__nf_conntrack_confirm")
int BPF_PROG(fexit_confirm, struct sk_buff *skb, int ret)
{
	return confirm_exit(object_call(skb), skb, ret, true);
}

SEC("fexit/__nf_conntrack_confirm")
int BPF_PROG(fexit_confirm_hist, struct sk_buff *skb, int ret)
{
	return confirm_exit_hist(skb, ret);
}

SEC("kprobe/__nf_conntrack_confirm")
int BPF_KPROBE(kprobe_confirm, struct sk_buff *skb)
{
	confirm_enter(task_call(), skb);
	return 0;
}

SEC("kretprobe/__nf_conntrack_confirm")
int BPF_KRETPROBE(kretprobe_confirm, int ret)
{
	return confirm_exit(task_call(), NULL, ret, false);
}

SEC("fexit/__nf_conntrack_confirm")
int BPF_PROG(fexit_confirm_new, struct sk_buff *skb, int ret)
{
	return confirm_new(skb, ret, true);
}

/* The kretprobe sees no arguments: it takes the skb from the entry that
 * kprobe_confirm left in task_entries (before 5.13; see below). */
SEC("kretprobe/__nf_conntrack_confirm")
int BPF_KRETPROBE(kretprobe_confirm_new, int ret)
{
	struct entry v;
	if (!take_entry(task_call(), EVENT_CONFIRM, &v))
		return 0;
	return confirm_new((struct sk_buff *)v.skb, ret, false);
}

/* The same pair where the kernel lets tracing programs use task storage
 * (5.13+, a10787e6d58c): the skb waits in the calling task's own storage
 * instead of task_entries, found without a hash lookup and its bucket lock
 * (VM lab, 6.1: 15 us a flow for the pair, 23 us with a hash map and
 * confirm_enter's tuples). Softirq work runs as the task
 * it interrupted, or as the CPU's own idle task, as pid_key() keys it; so
 * the storage is a stack too, as task_entries' values are. */
struct saved_skbs {
	__u32 depth;
	__u32 pad;
	__u64 skb[ENTRY_DEPTH];
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct saved_skbs);
} confirm_skb SEC(".maps");

SEC("kprobe/__nf_conntrack_confirm")
int BPF_KPROBE(kprobe_confirm_task, struct sk_buff *skb)
{
	struct saved_skbs *s = bpf_task_storage_get(&confirm_skb, bpf_get_current_task_btf(), 0,
						   BPF_LOCAL_STORAGE_GET_F_CREATE);

	if (s)
		s->skb[push_slot(&s->depth)] = (__u64)skb;
	return 0;
}

SEC("kretprobe/__nf_conntrack_confirm")
int BPF_KRETPROBE(kretprobe_confirm_new_task, int ret)
{
	struct saved_skbs *s = bpf_task_storage_get(&confirm_skb, bpf_get_current_task_btf(), 0, 0);
	__u64 skb;
	__u32 top;

	if (!s) {
		count_loss(LOSS_NO_ENTRY);
		return 0;
	}
	if (!pop_depth(s->depth, &top))
		return 0;
	skb = s->skb[slot_index(top)];
	barrier();
	s->depth = top;
	return confirm_new((struct sk_buff *)skb, ret, false);
}

/* kprobe.session (6.10+, fprobe; kernel/trace/bpf_trace.c): one program run
 * at the entry and at the return of each call, with an 8-byte cookie per
 * call. The skb waits in the cookie instead of a map, with no lookup at
 * all (README: Overhead).
 * The kfuncs are weak: this program loads only where the Go side found
 * kprobe.session. */
extern __u64 *bpf_session_cookie(void) __ksym __weak;
extern bool bpf_session_is_return(void) __ksym __weak;

SEC("kprobe.session/__nf_conntrack_confirm")
int ksession_confirm_new(struct pt_regs *ctx)
{
	__u64 *cookie = bpf_session_cookie();

	if (!bpf_session_is_return()) {
		*cookie = PT_REGS_PARM1(ctx);
		return 0; /* 0: run again at the return */
	}
	return confirm_new((struct sk_buff *)*cookie, PT_REGS_RC(ctx), false);
}

#endif /* CTPROBE_POINT_CONFIRM_BPF_H */
