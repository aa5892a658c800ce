/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Probe point nf_ct_resolve_clash: a clash between a loser ct and its
 * confirmed winner, read inside __nf_conntrack_confirm.
 */
#ifndef CTPROBE_POINT_CLASH_BPF_H
#define CTPROBE_POINT_CLASH_BPF_H

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
#include "clash_pair.bpf.h"

/* Called only when confirm found a confirmed entry W with our tuple
 * (docs/kernel-notes.md, What confirm returns, per era).
 * h is W's tuplehash node; h->tuple.dst.dir says which of W's two nodes
 * matched, so W = container_of(h, struct nf_conn, tuplehash[dir]). The
 * verdict it returns is the one __nf_conntrack_confirm returns (NF_ACCEPT
 * after a merge or a reply-only insert, else NF_DROP; 4.19 to 6.18). */
static __always_inline void read_clash(struct event *e, struct sk_buff *skb, struct nf_conntrack_tuple_hash *h)
{
	struct nf_conn *winner;
	__u8 dir = BPF_CORE_READ(h, tuple.dst.dir) & 1;

	winner = (struct nf_conn *)((void *)h - bpf_core_field_offset(struct nf_conn, tuplehash) -
				    dir * bpf_core_type_size(struct nf_conntrack_tuple_hash));
	read_ct(e, winner, false);
	e->ct = (__u64)skb_ct(skb, &e->ctinfo, false);
	e->other_ct = (__u64)winner;
	e->skb = (__u64)skb;
	e->aux = dir;
}

/* The value a clash record starts from (a map value: the helper takes it). */
const struct clash_seen empty_clash_seen = {};

/* --timeline: the clash, and the loser's tuples while the loser is alive,
 * for confirm's exit; built in its map slot, keyed by skb. */
static __always_inline void clash_seen(struct sk_buff *skb, struct nf_conntrack_tuple_hash *h)
{
	__u64 key = (__u64)skb;
	struct clash_seen *cs;
	struct nf_conn *loser;

	stored_update(&clashes, &clashes_stored, &key, &empty_clash_seen);
	cs = bpf_map_lookup_elem(&clashes, &key);
	if (!cs)
		return;
	init_event(&cs->clash, EVENT_CLASH, TASK_BY_CLASH);
	read_clash(&cs->clash, skb, h);
	loser = (struct nf_conn *)cs->clash.ct;
	read_tuple(&cs->loser_orig, &loser->tuplehash[0].tuple, false);
	read_tuple(&cs->loser_reply, &loser->tuplehash[1].tuple, false);
	if (stream_all && history_wanted(ct_history(cs->clash.ct), &cs->clash))
		output(&cs->clash);
}

static __always_inline void clash_enter(__u64 key, struct sk_buff *skb, struct nf_conntrack_tuple_hash *h)
{
	struct clash_pair *p;
	__u32 zero = 0;

	if (!skb || !h)
		return;
	if (!clash_path_only()) {
		clash_seen(skb, h);
		return;
	}
	p = bpf_map_lookup_elem(&scratch_pair, &zero);
	if (!p)
		return;
	init_event(&p->clash, EVENT_CLASH, TASK_BY_CLASH);
	read_clash(&p->clash, skb, h);
	read_confirm(&p->loser, skb, (struct nf_conn *)p->clash.ct, CT_SPAN_CLASH, TASK_BY_CLASH, false);
	/* Kept even when filtered out: with --all, confirm's exit must know
	 * that this skb clashed (after a merge it carries the winner's ct). */
	stored_update(&pairs, &pairs_stored, &key, p);
}

/* Default mode: nf_ct_resolve_clash's verdict is confirm's. */
static __always_inline int clash_exit(__u64 key, struct sk_buff *skb, int ret)
{
	struct clash_pair *p = stored_lookup(&pairs, &pairs_stored, &key);

	if (!p) /* the probe attached mid-call */
		return 0;
	if (!skb)
		skb = (struct sk_buff *)p->loser.skb;
	send_pair(p, key, skb, ret);
	return 0;
}

/* 5.6+: static int nf_ct_resolve_clash(struct sk_buff *skb, struct nf_conntrack_tuple_hash *h,
 *                                       u32 reply_hash) -- __cold noinline, always a symbol.
 * Fallback: static int __nf_ct_resolve_clash(struct sk_buff *skb, struct nf_conntrack_tuple_hash *h). */
SEC("fentry/nf_ct_resolve_clash")
int BPF_PROG(fentry_clash, struct sk_buff *skb, struct nf_conntrack_tuple_hash *h)
{
	clash_enter((__u64)skb, skb, h);
	return 0;
}

SEC("fexit/nf_ct_resolve_clash")
int BPF_PROG(fexit_clash, struct sk_buff *skb, struct nf_conntrack_tuple_hash *h, __u32 reply_hash, int ret)
{
	return clash_exit((__u64)skb, skb, ret);
}

/* kprobe variants: the default mode's pair is keyed by task, for its
 * kretprobe (which sees no arguments); the other modes key by skb. */
static __always_inline __u64 kprobe_pair_key(struct sk_buff *skb)
{
	return stream_confirms ? (__u64)skb : pid_key();
}

SEC("kprobe/nf_ct_resolve_clash")
int BPF_KPROBE(kprobe_clash, struct sk_buff *skb, struct nf_conntrack_tuple_hash *h)
{
	clash_enter(kprobe_pair_key(skb), skb, h);
	return 0;
}

/* 4.19-5.5: static int nf_ct_resolve_clash(struct net *net, struct sk_buff *skb,
 *                enum ip_conntrack_info ctinfo, struct nf_conntrack_tuple_hash *h) */
SEC("kprobe/nf_ct_resolve_clash")
int BPF_KPROBE(kprobe_clash_v419, struct net *net, struct sk_buff *skb, int ctinfo,
	       struct nf_conntrack_tuple_hash *h)
{
	clash_enter(kprobe_pair_key(skb), skb, h);
	return 0;
}

SEC("kretprobe/nf_ct_resolve_clash")
int BPF_KRETPROBE(kretprobe_clash, int ret)
{
	return clash_exit(pid_key(), NULL, ret);
}

#endif /* CTPROBE_POINT_CLASH_BPF_H */
