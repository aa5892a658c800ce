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

struct history {
	struct event in;
	struct event nat[2]; /* indexed by manip type: 0 SRC, 1 DST */
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

static __always_inline void replay(struct history *h, __u16 extra)
{
	if (h->have & HIST_IN) {
		h->in.flags |= EVENT_F_HISTORY | extra;
		output(&h->in);
	}
	for (int m = 0; m < 2; m++) {
		if (h->have & (m ? HIST_NAT_DST : HIST_NAT_SRC)) {
			h->nat[m].flags |= EVENT_F_HISTORY | extra;
			output(&h->nat[m]);
		}
	}
	if (h->have & HIST_CONFIRM) {
		h->confirm.flags |= EVENT_F_HISTORY | extra;
		output(&h->confirm);
	}
}

#endif /* CTPROBE_HISTORY_BPF_H */
