/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The per-ct history, kept in the kernel for the modes that follow every
 * flow (--timeline): each new ct's records, replayed when the ct takes part
 * in a clash, and the clash records that confirm's exit joins.
 */
#ifndef CTPROBE_HISTORY_BPF_H
#define CTPROBE_HISTORY_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "compiler.bpf.h"
#include "record.bpf.h"
#include "slots.bpf.h"
#include "stored.bpf.h"

/* Per-ct history kept in the kernel so that ordinary packets cost no ring
 * buffer record; replayed only when the ct takes part in a clash. */
enum { HIST_IN = 1, HIST_NAT_SRC = 2, HIST_NAT_DST = 4, HIST_CONFIRM = 8 };

/* A NAT binding as a history keeps it: what a NAT record tells beyond its
 * ct's birth (time, CPU, manip, flags, the REPLY tuple before and after the
 * binding, the range). The ct, its ORIGINAL tuple, netns, zone and mark are
 * the birth's, and the replay fills them in; the task a binding ran in says
 * nothing (softirq, or the birth's). Built without an event, it spares each
 * binding the event's helper calls and copies: two per new flow. */
struct nat_step {
	__u64 ts;
	__u32 cpu;
	__u16 flags;
	__u8 aux;
	__u8 pad;
	struct tuple before;
	struct tuple reply;
	struct nat_range range;
};

/* A plain insert as a history keeps it, for when the ct wins a later
 * clash: what a CONFIRM record tells beyond the birth (time, task, socket,
 * verdict, status, the REPLY tuple with its bindings). The ct, its ORIGINAL
 * tuple, netns, zone and mark are the birth's; the ct is its own other_ct. */
struct confirm_step {
	__u64 ts;
	__u64 pid_tgid;
	__u64 cgroup;
	__u64 status;
	__u64 sk_cookie;
	__u32 cpu;
	__u32 ret;
	__u32 sk_ino;
	__u16 flags;
	__u16 sk_port;
	__u8 ctinfo;
	__u8 sk_family;
	__u8 sk_state;
	__u8 pad[5];
	char comm[16];
	struct tuple reply;
};

struct history {
	/* The ct whose history the slot holds (slots.bpf.h); with HIST_WRITING
	 * while its birth is written, 0 once the ct was freed or filtered out. */
	__u64 owner;
	struct event in;
	struct nat_step nat[2]; /* indexed by manip type: 0 SRC, 1 DST */
	struct confirm_step confirm;
	__u32 have;
	__u32 tgid; /* the task in whose context the ct was born, for --pid */
};

/* The histories, in slots picked by a hash of the ct's address
 * (slots.bpf.h). A birth is written in its slot in place: as an LRU hash
 * map's value it was built in scratch space, then copied in by an update
 * that took the map's locks, a third of --timeline's probe time per new
 * flow in the bench. A history is read when its ct clashes, microseconds
 * after the birth for a loser and its winner. Each ct may take either slot
 * of a pair (a set), and a birth takes the older history's: a history is
 * lost early only if two later births fall in its set, where with one slot
 * per ct any one would do. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); /* sized by the Go side, a power of two */
	__type(key, __u32);
	__type(value, struct history);
} hist SEC(".maps");

/* hist's max_entries - 1, set by the Go side. */
const volatile __u32 hist_slot_mask = 0;

/* A ct's set: its first slot. nf_conn objects are 64-byte aligned
 * (SLAB_HWCACHE_ALIGN in nf_conntrack_init_start); the product's upper half
 * is mixed enough. */
static __always_inline __u32 hist_set(__u64 ct)
{
	return (__u32)(addr_hash(ct, 6) >> 32) & hist_slot_mask & ~1U;
}

static __always_inline struct history *hist_way(__u32 set, __u32 way)
{
	__u32 slot = set | way;

	return bpf_map_lookup_elem(&hist, &slot);
}

/* A copy of a history taken for a replay, too big for the 512-byte stack:
 * the slot may be taken over while the replay reads it. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct history);
} scratch_hist SEC(".maps");

/* A clash seen inside confirm, keyed by skb, joined at confirm's exit
 * (--timeline, with or without --all), with the loser's tuples: a merged
 * loser is freed inside nf_ct_resolve_clash, and confirm's exit alone
 * (--timeline's) cannot read them any more. */
struct clash_seen {
	struct event clash;
	struct tuple loser_orig;
	struct tuple loser_reply;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct clash_seen);
} clashes SEC(".maps");

/* Clash records stored and not deleted (stored.bpf.h): confirm's exit
 * skips its lookup while there are none, as on almost every new flow. */
__u64 clashes_stored = 0;

/* The REPLY tuple a ct had before the binding of manip: the bindings come
 * in hook order, DST (PREROUTING, OUTPUT) before SRC (POSTROUTING, INPUT),
 * one per manip (nf_nat_inet_fn binds only what nf_nat_initialized says is
 * not yet bound), so it is the DST binding's result for SRC, else the
 * REPLY tuple of the ct's birth. */
static __always_inline const struct tuple *reply_before(const struct history *h, __u32 manip)
{
	if (manip == 0 /* NF_NAT_MANIP_SRC */ && (h->have & HIST_NAT_DST))
		return &h->nat[1].reply;
	return &h->in.reply;
}

/* The history of a ct whose birth was recorded (--timeline, or --all with
 * --pid), if any. */
static __always_inline struct history *ct_history(__u64 ct)
{
	__u32 set = hist_set(ct);
	struct history *h;

	if (!ct)
		return NULL;
	h = hist_way(set, 0);
	if (h && h->owner == ct)
		return h;
	h = hist_way(set, 1);
	if (h && h->owner == ct)
		return h;
	return NULL;
}

/* An owner's low bit while the birth is written (ct addresses are 64-byte
 * aligned): no lookup matches the slot, and another birth in the same set
 * takes the other slot. Racing packets' cts are born at the same instant,
 * on two CPUs, and may share a set; with a free-looking slot while each
 * was written, both took the same one, and one history was lost. */
#define HIST_WRITING 1ULL

/* The slot for a new ct's history, marked as written for ct: the one an
 * earlier ct at the same address left (ct objects are SLAB_TYPESAFE_BY_RCU
 * and reused), else a free one, else one that no other birth is writing,
 * the older birth's of two. The caller writes the birth in it, then
 * publishes or abandons it.
 *
 * A CPU looks at its own way of the pair first (by the parity of its
 * number): a race's two cts are born at the same instant on two CPUs, and
 * when they fall in one set with both slots free, each read the other's
 * slot as free before the other marked it, both took the first, and one
 * history was lost (a 6.12 VM run: winner and loser at slot 6608 of 8192).
 * The mark alone cannot close that window without an atomic exchange
 * (BPF cmpxchg, 5.12+); CPUs of different parity no longer meet in it. */
static __always_inline struct history *hist_claim(__u64 ct)
{
	__u32 set = hist_set(ct), mine = bpf_get_smp_processor_id() & 1;
	struct history *a = hist_way(set, mine), *b = hist_way(set, mine ^ 1), *h;

	if (!a || !b)
		return NULL;
	if ((a->owner & ~HIST_WRITING) == ct)
		h = a;
	else if ((b->owner & ~HIST_WRITING) == ct)
		h = b;
	else if (!a->owner)
		h = a;
	else if (!b->owner)
		h = b;
	else if (a->owner & HIST_WRITING)
		h = b;
	else if (b->owner & HIST_WRITING)
		h = a;
	else
		h = a->in.ts <= b->in.ts ? a : b;
	h->owner = ct | HIST_WRITING;
	barrier();
	return h;
}

/* The birth is written: ct's history is found from now on, unless another
 * birth took the slot meanwhile (then neither is trusted: the slot is
 * that birth's to publish). */
static __always_inline void hist_publish(struct history *h, __u64 ct)
{
	barrier();
	if (h->owner == (ct | HIST_WRITING))
		h->owner = ct;
}

/* A birth that is not kept (filtered out) frees its slot. */
static __always_inline void hist_abandon(struct history *h, __u64 ct)
{
	if (h->owner == (ct | HIST_WRITING))
		h->owner = 0;
}

/* A freed loser's history: nothing of it is kept. */
static __always_inline void hist_forget(__u64 ct)
{
	struct history *h = ct_history(ct);

	if (h)
		h->owner = 0;
}

/* A record of a step after the birth, with what it shares with the birth:
 * the ct, its ORIGINAL tuple, netns, zone and mark. */
static __always_inline void replay_base(struct event *e, const struct history *h, __u8 kind, __u64 ts, __u32 cpu,
					__u16 flags)
{
	__builtin_memset(e, 0, sizeof(*e));
	e->kind = kind;
	e->hook = 0xff;
	e->ts = ts;
	e->cpu = cpu;
	e->flags = flags;
	e->ct = h->in.ct;
	e->orig = h->in.orig;
	e->netns = h->in.netns;
	e->zone = h->in.zone;
	e->mark = h->in.mark;
}

/* The NAT record of step m, rebuilt around the ct's birth (e: the replay's
 * scratch event). */
static __always_inline void replay_nat(struct event *e, const struct history *h, int m, __u16 extra)
{
	const struct nat_step *s = &h->nat[m];

	replay_base(e, h, EVENT_NAT, s->ts, s->cpu, s->flags | EVENT_F_HISTORY | extra);
	e->aux = s->aux;
	e->before = s->before;
	e->reply = s->reply;
	e->range = s->range;
	output(e);
}

/* The CONFIRM record of a plain insert, rebuilt around the ct's birth. */
static __always_inline void replay_confirm(struct event *e, const struct history *h, __u16 extra)
{
	const struct confirm_step *s = &h->confirm;

	replay_base(e, h, EVENT_CONFIRM, s->ts, s->cpu, s->flags | EVENT_F_HISTORY | extra);
	e->pid_tgid = s->pid_tgid;
	e->cgroup = s->cgroup;
	__builtin_memcpy(e->comm, s->comm, sizeof(e->comm));
	e->ctinfo = s->ctinfo;
	e->status = s->status;
	e->ret = s->ret;
	e->sk_cookie = s->sk_cookie;
	e->sk_ino = s->sk_ino;
	e->sk_port = s->sk_port;
	e->sk_family = s->sk_family;
	e->sk_state = s->sk_state;
	e->reply = s->reply;
	e->other_ct = h->in.ct;
	output(e);
}

/* The records after the birth, rebuilt in the replay's scratch event. */
static __always_inline void replay_steps(const struct history *h, __u16 extra)
{
	__u32 slot = SCRATCH_REPLAY;
	struct event *e = bpf_map_lookup_elem(&scratch, &slot);

	if (!e)
		return;
	if (h->have & HIST_NAT_SRC)
		replay_nat(e, h, 0, extra);
	if (h->have & HIST_NAT_DST)
		replay_nat(e, h, 1, extra);
	if (h->have & HIST_CONFIRM)
		replay_confirm(e, h, extra);
}

/* Replay ct's history, copied first and its owner checked again after the
 * copy (slots.bpf.h). It reports whether there was one. */
static __always_inline bool replay(__u64 ct, __u16 extra)
{
	struct history *h = ct_history(ct), *c;
	__u32 zero = 0;

	if (!h)
		return false;
	c = bpf_map_lookup_elem(&scratch_hist, &zero);
	if (!c)
		return false;
	__builtin_memcpy(c, h, sizeof(*c));
	barrier();
	if (h->owner != ct)
		return false;
	if (c->have & HIST_IN) {
		c->in.flags |= EVENT_F_HISTORY | extra;
		output(&c->in);
	}
	replay_steps(c, extra);
	return true;
}

#endif /* CTPROBE_HISTORY_BPF_H */
