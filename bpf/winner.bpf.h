/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The in-kernel winner lookup (lookup_winner): where no clash probe could
 * attach, confirmed cts are indexed by tuple at confirm's entry, and a
 * loser's winner is found there at confirm's exit.
 */
#ifndef CTPROBE_WINNER_BPF_H
#define CTPROBE_WINNER_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "record.bpf.h"
#include "kernel_reads.bpf.h"
#include "mode.bpf.h"

/* Confirmed cts by tuple, for lookup_winner. The kernel finds a clash by
 * comparing a tuple's addresses, ports and protocol (not its direction) in
 * one netns and zone, so the key is exactly that. */
struct tuple_key {
	__u32 netns;
	__u16 zone;
	__u16 pad;
	struct tuple t;
};

/* The cts that reached confirm with a tuple: two slots per CPU (mod
 * CANDIDATE_CPUS), the latest and the one before, so that two racers on two
 * CPUs never overwrite each other, nor a winner and its loser that follow
 * each other on one CPU; and no atomic is needed (4.19 has no fetching
 * atomics). */
#define CANDIDATE_CPUS 8
#define CANDIDATE_SLOTS (2 * CANDIDATE_CPUS)
struct candidates {
	__u64 ct[CANDIDATE_SLOTS];
	__u64 ts[CANDIDATE_SLOTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct tuple_key);
	__type(value, struct candidates);
} confirmed SEC(".maps");

/* The winner is in the hash table: confirmed and not dying (a ct killed or
 * timed out may still be held, and its memory reused for a new ct that is
 * not confirmed yet). Its age does not matter: the entry a loser collides
 * with may be a long-lived flow (race 4 against an established entry),
 * which stays a candidate until newer tuples push it out of the index.
 * docs/kernel-notes.md, Probe points: signatures and inlining. */
static __always_inline bool ct_in_table(struct nf_conn *ct)
{
	unsigned long status = BPF_CORE_READ(ct, status);

	return (status & (IPS_CONFIRMED | IPS_DYING)) == IPS_CONFIRMED;
}

static __always_inline void tuple_key_of(struct tuple_key *k, __u32 netns, __u16 zone, const struct tuple *t)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->netns = netns;
	k->zone = zone;
	k->t = *t;
	k->t.dir = 0;
}

static __always_inline void add_candidate(const struct tuple_key *k, __u64 ct, __u64 now)
{
	__u32 slot = (bpf_get_smp_processor_id() % CANDIDATE_CPUS) * 2;
	struct candidates *c = bpf_map_lookup_elem(&confirmed, k);

	if (!c) {
		struct candidates fresh = {};
		/* NOEXIST: a racer on another CPU may have created it meanwhile. */
		bpf_map_update_elem(&confirmed, k, &fresh, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&confirmed, k);
		if (!c)
			return;
	}
	if (slot + 1 >= CANDIDATE_SLOTS) /* bounds for the verifier */
		return;
	if (c->ct[slot] != ct) {
		c->ct[slot + 1] = c->ct[slot];
		c->ts[slot + 1] = c->ts[slot];
	}
	c->ct[slot] = ct;
	c->ts[slot] = now;
}

/* Index a ct entering confirm under both of its tuples (as the kernel's
 * hash will), before it can be in the hash: the winner of a clash is always
 * indexed before its loser looks for it. */
static __always_inline void index_candidate(struct nf_conn *ct, const struct tuple *orig, const struct tuple *reply)
{
	struct tuple_key k;
	__u64 now = bpf_ktime_get_ns();
	__u32 netns = BPF_CORE_READ(ct, ct_net.net, ns.inum);
	__u16 zone = 0;

	if (bpf_core_field_exists(ct->zone))
		zone = BPF_CORE_READ(ct, zone.id);
	tuple_key_of(&k, netns, zone, orig);
	add_candidate(&k, (__u64)ct, now);
	tuple_key_of(&k, netns, zone, reply);
	add_candidate(&k, (__u64)ct, now);
}

/* The winner of a clash nobody saw at nf_ct_resolve_clash: the confirmed ct
 * holding the loser's ORIGINAL tuple, else its REPLY tuple (a reply-direction
 * clash, race 4). The ct is checked to still hold that tuple, since ct memory
 * is reused. Emits a CLASH record like clash_enter's; returns the winner. */
static __always_inline __u64 lookup_clash(const struct event *e)
{
	struct tuple_key k;
	struct tuple now;
	struct event *c;
	struct candidates *cand;
	struct nf_conn *w = NULL;
	__u64 best = 0;
	__u8 dir;

	for (dir = 0; dir < 2 && !w; dir++) {
		tuple_key_of(&k, e->netns, e->zone, dir ? &e->reply : &e->orig);
		cand = bpf_map_lookup_elem(&confirmed, &k);
		if (!cand)
			continue;
		/* The newest candidate other than the loser that is in the table
		 * and still holds the tuple (ct memory is reused) is the one that
		 * won. */
		for (int i = 0; i < CANDIDATE_SLOTS; i++) {
			__u64 ct = cand->ct[i];
			if (!ct || ct == e->ct || cand->ts[i] <= best || !ct_alive((struct nf_conn *)ct) ||
			    !ct_in_table((struct nf_conn *)ct))
				continue;
			for (int j = 0; j < 2; j++) {
				read_tuple(&now, &((struct nf_conn *)ct)->tuplehash[j].tuple, false);
				now.dir = 0;
				if (!__builtin_memcmp(&now, &k.t, sizeof(now))) {
					w = (struct nf_conn *)ct;
					best = cand->ts[i];
					break;
				}
			}
		}
	}
	if (!w)
		return 0;
	c = new_event(SCRATCH_WINNER, EVENT_CLASH, TASK_BY_CONFIRM);
	if (!c)
		return 0;
	read_ct(c, w, false);
	c->ct = e->ct;
	c->other_ct = (__u64)w;
	c->skb = e->skb;
	c->aux = dir - 1; /* which of the loser's tuples matched: 0 ORIGINAL, 1 REPLY */
	c->flags |= EVENT_F_LOOKUP | (sent_together() ? EVENT_F_HISTORY : 0);
	output(c);
	return (__u64)w;
}

#endif /* CTPROBE_WINNER_BPF_H */
