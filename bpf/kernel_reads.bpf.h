/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Kernel reads: what the probes take from the kernel's objects (tuples,
 * the ct, the skb's socket and DNS payload, the skb's sender, a NAT range),
 * with the kernel constants that vmlinux.h does not carry.
 */
#ifndef CTPROBE_KERNEL_READS_BPF_H
#define CTPROBE_KERNEL_READS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "ctprobe.h"
#include "compiler.bpf.h"
#include "slots.bpf.h"

/* include/uapi/linux/netfilter.h */
#define NF_DROP 0
#define NF_ACCEPT 1
/* include/uapi/linux/netfilter/nf_conntrack_common.h, every version */
#define NFCT_INFOMASK 7UL
#define IP_CT_NEW 2
#define IPS_CONFIRMED (1UL << 3)
/* Kernel-internal since 5.6 (6a757c07e51f); shares bit 12 with IPS_UNTRACKED,
 * which is never set on a ct that reaches confirm. */
#define IPS_NAT_CLASH (1UL << 12)
#define TCP_TIME_WAIT 6
#define TCP_NEW_SYN_RECV 12

/* Who sent an skb, recorded where it left its socket's netns (net_dev_queue)
 * and joined at the next netns's PREROUTING, where the socket is gone: veth
 * hands the same skb object across (skb_scrub_packet keeps it) and
 * ip_rcv_core orphans it before conntrack runs
 * (docs/kernel-notes.md, Who sent a packet). */
struct origin {
	__u64 skb; /* whose origin this slot holds; 0 while it is written */
	__u64 ts;
	__u64 pid_tgid;
	__u64 cgroup;
	__u64 sk_cookie;
	__u32 sk_ino;
	__u16 sk_port;
	__u8 sk_family;
	__u8 sk_state;
	char comm[16];
};

/* The origins, one slot per skb address (slots.bpf.h): every packet a
 * socket sends may start a flow where it arrives, so this is written for
 * every one (an LRU hash map's update was half the probes' time on
 * established UDP under --timeline in the bench). A slot is needed only for
 * the microseconds between the send and conntrack in the next netns: of the
 * skbs in flight at once, one shares another's slot with odds of about 1 in
 * ORIGIN_SLOTS each, and then shows no sender, as when the LRU map evicted. */
#define ORIGIN_SLOTS_LOG2 14
#define ORIGIN_SLOTS (1U << ORIGIN_SLOTS_LOG2)

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ORIGIN_SLOTS);
	__type(key, __u32);
	__type(value, struct origin);
} origins SEC(".maps");

/* An skb's slot. skbs are slab objects of 256 bytes (skbuff_head_cache), so
 * the address's low 8 bits are the same for all. */
static __always_inline __u32 origin_slot(__u64 skb)
{
	return (__u32)(addr_hash(skb, 8) >> (64 - ORIGIN_SLOTS_LOG2));
}

/* An origin older than this is a recycled skb, not the same packet. */
#define ORIGIN_MAX_AGE_NS 1000000000ULL

/* struct nf_conntrack_tuple, whose layout is the same in every version from
 * 4.19 to 6.18: src { u3 (16), u.all (2), l3num (2) }, dst { u3 (16),
 * u.all (2), protonum (1), dir (1) }. It is read with one copy instead of
 * one per field: this runs several times for every new flow. The addresses
 * are words, so that a direct read loads each as the kernel's BTF has it
 * (u3.all[4]): the verifier refuses a load that spans two members. */
struct nf_conntrack_tuple_fixed {
	__u32 src[4];
	__u16 sport;
	__u16 l3num;
	__u32 dst[4];
	__u16 dport;
	__u8 protonum;
	__u8 dir;
};
_Static_assert(sizeof(struct nf_conntrack_tuple_fixed) == sizeof(struct nf_conntrack_tuple),
	       "struct nf_conntrack_tuple changed layout");

/* Four words of a kernel object, one load each (direct). */
#define LOAD_WORDS4(dst, src)                 \
	do {                                  \
		(dst)[0] = (src)[0];          \
		(dst)[1] = (src)[1];          \
		(dst)[2] = (src)[2];          \
		(dst)[3] = (src)[3];          \
	} while (0)

static __always_inline void copy_tuple(struct tuple *out, const struct nf_conntrack_tuple_fixed *f)
{
	__builtin_memcpy(out->src, f->src, 16);
	__builtin_memcpy(out->dst, f->dst, 16);
	out->sport = f->sport;
	out->dport = f->dport;
	out->l3num = f->l3num;
	out->protonum = f->protonum;
	out->dir = f->dir;
}

/* A tuple, with loads where direct (a tracing program's typed argument or
 * what it points to: KREAD), else with one probe read. */
static __always_inline void read_tuple(struct tuple *out, const struct nf_conntrack_tuple *t, const bool direct)
{
	struct nf_conntrack_tuple_fixed f = {};

	if (direct) {
		const struct nf_conntrack_tuple_fixed *k = (const void *)t;

		LOAD_WORDS4(f.src, k->src);
		LOAD_WORDS4(f.dst, k->dst);
		f.sport = k->sport;
		f.l3num = k->l3num;
		f.dport = k->dport;
		f.protonum = k->protonum;
		f.dir = k->dir;
	} else {
		bpf_probe_read_kernel(&f, sizeof(f), t);
	}
	copy_tuple(out, &f);
}

/* A field of a kernel object: with a plain load where direct (a tracing
 * program's typed argument, in tp_btf, fentry and fexit, and what it
 * points to, which the verifier checks against BTF; a load that faults
 * reads 0, as a probe read would), else with bpf_probe_read_kernel, a
 * helper call each. direct is a constant in each caller, so only one form
 * is built. */
#define KREAD(direct, p, field) ((direct) ? (p)->field : BPF_CORE_READ(p, field))

/* skb->_nfct holds the ct pointer with ctinfo in its low 3 bits
 * (docs/kernel-notes.md, Where the ct lives on an skb). With direct, skb is
 * a tracing program's typed argument (KREAD); the ct is a number either
 * way, read with probe reads. */
static __always_inline struct nf_conn *skb_ct(struct sk_buff *skb, __u8 *ctinfo, const bool direct)
{
	unsigned long nfct = KREAD(direct, skb, _nfct);
	if (ctinfo)
		*ctinfo = nfct & NFCT_INFOMASK;
	return (struct nf_conn *)(nfct & ~NFCT_INFOMASK);
}

/* The ct itself: tuples, status, netns (ct->ct_net under CONFIG_NET_NS), and
 * zone/mark where the kernel was built with them (use field_exists:
 * docs/kernel-notes.md, BTF and CO-RE reads). */
static __always_inline void read_ct(struct event *e, struct nf_conn *ct, const bool direct)
{
	e->ct = (__u64)ct;
	read_tuple(&e->orig, &ct->tuplehash[0].tuple, direct);
	read_tuple(&e->reply, &ct->tuplehash[1].tuple, direct);
	e->status = KREAD(direct, ct, status);
	e->netns = direct ? ct->ct_net.net->ns.inum : BPF_CORE_READ(ct, ct_net.net, ns.inum);
	if (bpf_core_field_exists(ct->zone))
		e->zone = KREAD(direct, ct, zone.id);
	if (bpf_core_field_exists(ct->mark))
		e->mark = KREAD(direct, ct, mark);
}

/* struct nf_conn from tuplehash through ct_net: tuplehash[2], status and
 * ct_net come in this order in every version from 4.19 to 6.18 (128 bytes
 * on 64-bit kernels; 4.19 has its timeout between status and ct_net), so
 * one probe read of the span replaces five of read_ct's (both tuples,
 * status, the netns pointer) where the ct is a number, not a typed
 * pointer. The span is too big for the stack of the programs that read it,
 * so it is read into a per-CPU buffer, one per point that reads spans (the
 * rule of the scratch slots, record.bpf.h). */
#define CT_SPAN_MAX 192

enum ct_span_user {
	CT_SPAN_CT_IN,
	CT_SPAN_CONFIRM,
	CT_SPAN_CLASH,
	CT_SPAN_USERS,
};

struct ct_span {
	__u8 b[CT_SPAN_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CT_SPAN_USERS);
	__type(key, __u32);
	__type(value, struct ct_span);
} ct_spans SEC(".maps");

/* ct's span in user's buffer, or NULL where a kernel's layout does not fit
 * the buffer (then read_ct reads field by field). The offsets are CO-RE
 * constants, so the verifier knows the size and drops the branch not taken. */
static __always_inline struct ct_span *read_ct_span(struct nf_conn *ct, enum ct_span_user user)
{
	__u32 start = bpf_core_field_offset(ct->tuplehash);
	__u32 size = bpf_core_field_offset(ct->ct_net) + sizeof(void *) - start;
	__u32 key = user;
	struct ct_span *span;

	if (size > CT_SPAN_MAX || bpf_core_field_offset(ct->status) < start)
		return NULL;
	span = bpf_map_lookup_elem(&ct_spans, &key);
	if (span && bpf_probe_read_kernel(span->b, size, (void *)ct + start))
		return NULL;
	return span;
}

/* A field of the ct in its span, at its CO-RE offset. */
#define CT_SPAN_AT(span, ct, field) \
	((void *)(span)->b + (bpf_core_field_offset((ct)->field) - bpf_core_field_offset((ct)->tuplehash)))

static __always_inline __u64 ct_span_status(struct ct_span *span, struct nf_conn *ct)
{
	return *(unsigned long *)CT_SPAN_AT(span, ct, status);
}

/* read_ct from the ct's span (read_ct_span): the netns, zone and mark
 * still take a probe read each. */
static __always_inline void read_ct_spanned(struct event *e, struct nf_conn *ct, struct ct_span *span)
{
	struct net *net = *(struct net **)CT_SPAN_AT(span, ct, ct_net);

	e->ct = (__u64)ct;
	copy_tuple(&e->orig, CT_SPAN_AT(span, ct, tuplehash[0].tuple));
	copy_tuple(&e->reply, CT_SPAN_AT(span, ct, tuplehash[1].tuple));
	e->status = ct_span_status(span, ct);
	e->netns = BPF_CORE_READ(net, ns.inum);
	if (bpf_core_field_exists(ct->zone))
		e->zone = BPF_CORE_READ(ct, zone.id);
	if (bpf_core_field_exists(ct->mark))
		e->mark = BPF_CORE_READ(ct, mark);
}

/* read_ct with a ct that is a number: through its span in user's buffer. */
static __always_inline void read_ct_number(struct event *e, struct nf_conn *ct, enum ct_span_user user)
{
	struct ct_span *span = read_ct_span(ct, user);

	if (span)
		read_ct_spanned(e, ct, span);
	else
		read_ct(e, ct, false);
}

/* The socket fields of an event, an origin or a history's confirmation (all
 * name them alike). A request or timewait sock has only sock_common, so no
 * inode (0). */
#define READ_SK_AS(direct, dst, sk)                                                        \
	do {                                                                               \
		(dst)->sk_family = KREAD(direct, sk, __sk_common.skc_family);             \
		(dst)->sk_state = KREAD(direct, sk, __sk_common.skc_state);               \
		(dst)->sk_port = KREAD(direct, sk, __sk_common.skc_num);                  \
		(dst)->sk_cookie = KREAD(direct, sk, __sk_common.skc_cookie.counter);     \
		(dst)->sk_ino = 0;                                                         \
		if ((dst)->sk_state != TCP_TIME_WAIT && (dst)->sk_state != TCP_NEW_SYN_RECV) \
			(dst)->sk_ino = (direct) ? (sk)->sk_socket->file->f_inode->i_ino : \
						   BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino); \
	} while (0)

/* skb->sk may be a request or timewait sock (only sock_common is valid) or a
 * full socket; at PREROUTING it is NULL (ip_rcv_core orphans it:
 * docs/kernel-notes.md, Who sent a packet). */
static __always_inline void read_sock(struct event *e, struct sk_buff *skb, const bool direct)
{
	struct sock *sk = KREAD(direct, skb, sk);
	if (!sk)
		return;
	e->flags |= EVENT_F_SOCK;
	READ_SK_AS(direct, e, sk);
}

/* The first bytes of a UDP DNS message. transport_header is set at both
 * LOCAL_OUT (udp_send_skb) and PREROUTING (ip_rcv_core, ipv6_rcv) before
 * conntrack runs; a DNS query this small sits in the linear area. */
static __always_inline void read_dns(struct event *e, struct sk_buff *skb, const bool direct)
{
	unsigned char *head;
	struct udphdr *uh;
	__u16 len;

	if (e->orig.protonum != 17 /* IPPROTO_UDP */ ||
	    (e->orig.dport != bpf_htons(53) && e->orig.sport != bpf_htons(53)))
		return;
	head = KREAD(direct, skb, head);
	uh = (struct udphdr *)(head + KREAD(direct, skb, transport_header));
	len = bpf_ntohs(BPF_CORE_READ(uh, len));
	if (len <= sizeof(*uh))
		return;
	len -= sizeof(*uh);
	if (len > PAYLOAD_MAX)
		len = PAYLOAD_MAX;
	if (bpf_probe_read_kernel(e->payload, len & (PAYLOAD_MAX * 2 - 1), uh + 1) == 0)
		e->payload_len = len;
}

/* Where the skb e->skb has no socket, take the sender recorded at transmit.
 * The slot is copied, then its owner checked again: another CPU may be
 * writing it for another skb meanwhile (it clears the owner first). The
 * address is hashed as e->skb holds it, reloaded from memory after the
 * barrier: a tracing program's skb argument is a typed pointer, on which
 * the verifier refuses a shift (6.12: "pointer arithmetic with >>=
 * operator prohibited"), where a value loaded from a map is a number. */
static __always_inline void read_origin(struct event *e)
{
	struct origin *o, c;
	__u64 key;
	__u32 slot;

	if (e->flags & EVENT_F_SOCK)
		return;
	barrier();
	key = e->skb;
	slot = origin_slot(key);
	o = bpf_map_lookup_elem(&origins, &slot);
	if (!o || o->skb != key)
		return;
	__builtin_memcpy(&c, o, sizeof(c));
	barrier();
	if (o->skb != key || e->ts - c.ts > ORIGIN_MAX_AGE_NS)
		return;
	e->flags |= EVENT_F_ORIGIN | EVENT_F_SOCK;
	e->pid_tgid = c.pid_tgid;
	e->cgroup = c.cgroup;
	e->sk_cookie = c.sk_cookie;
	e->sk_ino = c.sk_ino;
	e->sk_port = c.sk_port;
	e->sk_family = c.sk_family;
	e->sk_state = c.sk_state;
	__builtin_memcpy(e->comm, c.comm, sizeof(e->comm));
}

/* struct nf_nat_range2 is in nf_nat.ko's BTF only on modular kernels
 * (docs/kernel-notes.md, BTF and CO-RE reads), so it is read with its fixed
 * layout (unchanged since 4.18) instead of CO-RE. */
struct nf_nat_range2_fixed {
	__u32 flags;
	__u32 min_addr[4];
	__u32 max_addr[4];
	__u16 min_proto;
	__u16 max_proto;
	__u16 base_proto;
};

/* A NAT range, with loads where direct (as read_tuple). */
static __always_inline void read_range(struct nat_range *out, const void *range, const bool direct)
{
	struct nf_nat_range2_fixed r = {};

	/* NULL (a null binding): zeros, as in a new event. */
	if (range && direct) {
		const struct nf_nat_range2_fixed *k = range;

		r.flags = k->flags;
		LOAD_WORDS4(r.min_addr, k->min_addr);
		LOAD_WORDS4(r.max_addr, k->max_addr);
		r.min_proto = k->min_proto;
		r.max_proto = k->max_proto;
	} else if (range) {
		bpf_probe_read_kernel(&r, sizeof(r), range);
	}
	__builtin_memcpy(out->min_addr, r.min_addr, 16);
	__builtin_memcpy(out->max_addr, r.max_addr, 16);
	out->flags = r.flags;
	out->min_proto = r.min_proto;
	out->max_proto = r.max_proto;
}

/* What the default mode's loser record takes from its skb besides the
 * socket: the DNS message, and whether the skb was made here (skb_iif is set
 * only on receive). */
static __always_inline void read_sender(struct event *e, struct sk_buff *skb, const bool direct)
{
	read_dns(e, skb, direct);
	if (!KREAD(direct, skb, skb_iif))
		e->flags |= EVENT_F_LOCAL;
}

/* A ct still in use: its refcount (struct nf_conntrack.use: atomic_t in
 * 4.19, refcount_t later, 4 bytes either way) is not 0. A freed ct keeps its
 * tuples in memory (SLAB_TYPESAFE_BY_RCU), so the tuple alone proves nothing. */
static __always_inline bool ct_alive(struct nf_conn *ct)
{
	__u32 use = 0;

	bpf_probe_read_kernel(&use, sizeof(use), (void *)ct + bpf_core_field_offset(ct->ct_general.use));
	return use != 0;
}

#endif /* CTPROBE_KERNEL_READS_BPF_H */
