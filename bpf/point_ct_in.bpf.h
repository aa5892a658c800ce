/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Probe point nf_conntrack_in: a ct's birth (--timeline, and every packet's
 * ct with --all --timeline).
 */
#ifndef CTPROBE_POINT_CT_IN_BPF_H
#define CTPROBE_POINT_CT_IN_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "record.bpf.h"
#include "kernel_reads.bpf.h"
#include "pairing.bpf.h"
#include "history.bpf.h"
#include "filter.bpf.h"
#include "mode.bpf.h"

static __always_inline int ct_in_exit(struct sk_buff *skb, __u32 hook, __u32 verdict, const bool direct)
{
	struct history *h = NULL;
	struct ct_span *span;
	struct event *e;
	struct nf_conn *ct;
	__u8 ctinfo;
	bool is_new;
	__u32 tgid;

	if (!skb)
		return 0;
	ct = skb_ct(skb, &ctinfo, direct);
	if (!ct) /* untracked, invalid or dropped before a ct existed */
		return 0;
	/* --timeline records only births: a packet of an established flow
	 * costs these reads and nothing more (ctinfo can be IP_CT_NEW on a
	 * confirmed ct that has seen no reply yet, hence the status, read with
	 * the span that a birth's record takes its tuples from). */
	span = read_ct_span(ct, CT_SPAN_CT_IN);
	is_new = ctinfo == IP_CT_NEW &&
		 !((span ? ct_span_status(span, ct) : BPF_CORE_READ(ct, status)) & IPS_CONFIRMED);
	if (!is_new && !stream_all)
		return 0;
	/* The history serves replays (--timeline) and, with --all --timeline,
	 * --pid's filtering of the ct's later events by the task that created
	 * it. A birth it keeps is built in the ct's history slot itself. */
	if (is_new && (keep_history || filter_pid))
		h = hist_claim((__u64)ct);
	if (h) {
		e = &h->in;
		init_event(e, EVENT_CT_IN, TASK_BY_CT_IN);
	} else {
		e = new_event(SCRATCH_CT_IN, EVENT_CT_IN, TASK_BY_CT_IN);
	}
	if (!e)
		return 0;
	e->ctinfo = ctinfo;
	if (span)
		read_ct_spanned(e, ct, span);
	else
		read_ct(e, ct, false);
	read_sock(e, skb, direct);
	e->skb = (__u64)skb;
	read_origin(e);
	read_dns(e, skb, direct);
	e->hook = hook;
	e->ret = verdict;
	tgid = e->pid_tgid >> 32;
	if (is_new)
		e->flags |= EVENT_F_NEW;
	if (!wanted(e, tgid)) {
		if (h)
			hist_abandon(h, (__u64)ct);
		return 0;
	}
	if (h) {
		h->have = HIST_IN;
		h->tgid = tgid;
		hist_publish(h, (__u64)ct);
	}
	if (stream_all)
		output(e);
	return 0;
}

/* 5.x+: unsigned int nf_conntrack_in(struct sk_buff *skb, const struct nf_hook_state *state) */
SEC("fexit/nf_conntrack_in")
int BPF_PROG(fexit_ct_in, struct sk_buff *skb, const struct nf_hook_state *state, unsigned int ret)
{
	/* This runs for every conntracked packet. --timeline follows births
	 * only: a packet whose ct is not new leaves after one load, read
	 * directly (a tracing program reads its BTF-typed arguments without a
	 * helper call). */
	if (!stream_all && (skb->_nfct & NFCT_INFOMASK) != IP_CT_NEW)
		return 0;
	return ct_in_exit(skb, state->hook, ret, true);
}

SEC("kprobe/nf_conntrack_in")
int BPF_KPROBE(kprobe_ct_in, struct sk_buff *skb, const struct nf_hook_state *state)
{
	struct entry *v = save_entry(task_call(), EVENT_CT_IN);
	if (v) {
		v->skb = (__u64)skb;
		v->hook = BPF_CORE_READ(state, hook);
	}
	return 0;
}

/* 4.19: unsigned int nf_conntrack_in(struct net *net, u_int8_t pf, unsigned int hooknum, struct sk_buff *skb) */
SEC("kprobe/nf_conntrack_in")
int BPF_KPROBE(kprobe_ct_in_v419, struct net *net, __u8 pf, unsigned int hooknum, struct sk_buff *skb)
{
	struct entry *v = save_entry(task_call(), EVENT_CT_IN);
	if (v) {
		v->skb = (__u64)skb;
		v->hook = hooknum;
	}
	return 0;
}

SEC("kretprobe/nf_conntrack_in")
int BPF_KRETPROBE(kretprobe_ct_in, unsigned int ret)
{
	struct entry v;
	if (!take_entry(task_call(), EVENT_CT_IN, &v))
		return 0;
	return ct_in_exit((struct sk_buff *)v.skb, v.hook, ret, false);
}

#endif /* CTPROBE_POINT_CT_IN_BPF_H */
