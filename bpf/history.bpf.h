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

#include "record.bpf.h"

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

struct history {
	struct event in;
	struct nat_step nat[2]; /* indexed by manip type: 0 SRC, 1 DST */
	struct event confirm;
	__u32 have;
	__u32 tgid; /* the task in whose context the ct was born, for --pid */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384); /* resized by the Go side */
	__type(key, __u64);         /* ct pointer */
	__type(value, struct history);
} hist SEC(".maps");

/* Scratch space for a new history, too big for the 512-byte stack. */
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
	return bpf_map_lookup_elem(&hist, &ct);
}

/* The NAT record of step m, rebuilt around the ct's birth (e: the replay's
 * scratch event). */
static __always_inline void replay_nat(struct event *e, const struct history *h, int m, __u16 extra)
{
	const struct nat_step *s = &h->nat[m];

	__builtin_memset(e, 0, sizeof(*e));
	e->kind = EVENT_NAT;
	e->hook = 0xff;
	e->ts = s->ts;
	e->cpu = s->cpu;
	e->aux = s->aux;
	e->flags = s->flags | EVENT_F_HISTORY | extra;
	e->before = s->before;
	e->reply = s->reply;
	e->range = s->range;
	e->ct = h->in.ct;
	e->orig = h->in.orig;
	e->netns = h->in.netns;
	e->zone = h->in.zone;
	e->mark = h->in.mark;
	output(e);
}

static __always_inline void replay_nats(const struct history *h, __u16 extra)
{
	__u32 slot = SCRATCH_REPLAY;
	struct event *e = bpf_map_lookup_elem(&scratch, &slot);

	if (!e)
		return;
	if (h->have & HIST_NAT_SRC)
		replay_nat(e, h, 0, extra);
	if (h->have & HIST_NAT_DST)
		replay_nat(e, h, 1, extra);
}

static __always_inline void replay(struct history *h, __u16 extra)
{
	if (h->have & HIST_IN) {
		h->in.flags |= EVENT_F_HISTORY | extra;
		output(&h->in);
	}
	replay_nats(h, extra);
	if (h->have & HIST_CONFIRM) {
		h->confirm.flags |= EVENT_F_HISTORY | extra;
		output(&h->confirm);
	}
}

#endif /* CTPROBE_HISTORY_BPF_H */
