/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The clash pair of the default mode and --all: a clash and its loser, made
 * at nf_ct_resolve_clash's entry and sent at its exit or at confirm's.
 */
#ifndef CTPROBE_CLASH_PAIR_BPF_H
#define CTPROBE_CLASH_PAIR_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "record.bpf.h"
#include "kernel_reads.bpf.h"
#include "filter.bpf.h"
#include "mode.bpf.h"
#include "stored.bpf.h"

/* Default mode and --all: a clash and its loser, read at
 * nf_ct_resolve_clash's entry (a merged loser is freed inside it) and sent
 * with the verdict at its exit (default mode) or at confirm's (--all).
 * Keyed by skb, except for the default mode's kretprobe: pid_key(). */
struct clash_pair {
	struct event clash;
	struct event loser;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct clash_pair);
} pairs SEC(".maps");

/* Pairs stored and not deleted (stored.bpf.h): --all's confirm exit skips
 * its lookup while there are none, as on almost every new flow. */
__u64 pairs_stored = 0;

/* Scratch space for a pair, too big for the 512-byte stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct clash_pair);
} scratch_pair SEC(".maps");

/* A CONFIRM record of ct as its skb shows it at confirm (a clash's loser,
 * or with --all any new ct): its tuples, and the skb's socket and sender.
 * user, reader: the calling point's span buffer (read_ct_span) and task
 * cache (read_task). */
static __always_inline void read_confirm(struct event *e, struct sk_buff *skb, struct nf_conn *ct,
					 enum ct_span_user user, enum task_reader reader, const bool direct)
{
	init_event(e, EVENT_CONFIRM, reader);
	read_ct_number(e, ct, user);
	e->skb = (__u64)skb;
	read_sock(e, skb, direct);
	read_sender(e, skb, direct);
}

/* Send a clash pair with the verdict and the ct the skb carries now (the
 * winner after a merge), and forget it. */
static __always_inline void send_pair(struct clash_pair *p, __u64 key, struct sk_buff *skb, int ret)
{
	struct nf_conn *after = skb_ct(skb, &p->loser.ctinfo, false);

	p->loser.ts = bpf_ktime_get_ns();
	if (wanted(&p->loser, p->loser.pid_tgid >> 32)) {
		p->loser.ret = ret;
		p->loser.other_ct = (__u64)after;
		p->loser.status = after ? BPF_CORE_READ(after, status) : 0;
		if (sent_together())
			p->clash.flags |= EVENT_F_HISTORY;
		output(&p->clash);
		output(&p->loser);
	}
	stored_delete(&pairs, &pairs_stored, &key);
}

/* A pair older than this was left by a call in flight when the probes
 * attached, or by a missed kretprobe; its skb address may since carry
 * another packet. The cts must match as well (pair_of), so this only
 * guards against their memory being reused: it is long, because a CPU
 * starved by its host (a loaded VM) can take a second or more between
 * the clash and confirm's exit of one call. */
#define PAIR_MAX_AGE_NS 10000000000ULL

/* The pair p was made for this skb's passage through confirm, which now
 * carries ct: after a clash the skb carries the loser (dropped, or inserted
 * reply-only) or the winner (merged); any other ct, or an old pair, means
 * another packet at the same skb address. (A merge into a third entry,
 * nf_ct_resolve_clash_harder's three-way race, is taken for that too: glibc
 * and musl send two queries.) */
static __always_inline bool pair_of(const struct clash_pair *p, const struct nf_conn *ct)
{
	return ((__u64)ct == p->loser.ct || (__u64)ct == p->clash.other_ct) &&
	       bpf_ktime_get_ns() - p->clash.ts < PAIR_MAX_AGE_NS;
}

#endif /* CTPROBE_CLASH_PAIR_BPF_H */
