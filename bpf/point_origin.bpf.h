/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Probe point net_dev_queue: who sent an skb, for read_origin to find where
 * the skb reaches conntrack in another netns.
 */
#ifndef CTPROBE_POINT_ORIGIN_BPF_H
#define CTPROBE_POINT_ORIGIN_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "kernel_reads.bpf.h"
#include "record.bpf.h"

#define IP_CT_RELATED 1
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_ACK 0x10

/* Whether an skb leaving a device can make a new ct where it arrives: the
 * origin is wanted only for those, and an established flow's packets (most
 * packets) then cost a few reads here instead of the origin's. With a ct
 * from the sender's netns, a new or related one (not yet answered). Without
 * one (a pod's netns has no conntrack without rules), the socket tells
 * most: a datagram socket's packet may always start a flow (UDP keeps no
 * state to tell), a stream socket's only while it connects (a TCP SYN, in
 * TCP_SYN_SENT; an established one sends none). Other sockets' packets
 * (raw, packet, a stream socket closing), and request and timewait socks,
 * which have no struct socket, are told by their headers: any packet but a
 * TCP segment that is not a SYN (byte 13 of the TCP header: flags). The
 * headers are read with the helper in either form: skb->head is a byte
 * pointer, which the verifier does not let a program follow. */
static __always_inline bool may_start_flow(struct sk_buff *skb, struct sock *sk, const bool direct)
{
	unsigned long nfct = KREAD(direct, skb, _nfct);
	unsigned char *head;
	__u8 state, proto = 0, flags = 0;

	if (nfct) {
		__u32 ctinfo = nfct & NFCT_INFOMASK;
		return ctinfo == IP_CT_NEW || ctinfo == IP_CT_RELATED;
	}
	state = KREAD(direct, sk, __sk_common.skc_state);
	if (state != TCP_TIME_WAIT && state != TCP_NEW_SYN_RECV) {
		struct socket *so = KREAD(direct, sk, sk_socket);
		short type = so ? KREAD(direct, so, type) : 0;

		if (type == SOCK_DGRAM || (type == SOCK_STREAM && state == TCP_SYN_SENT))
			return true;
		if (type == SOCK_STREAM && state == TCP_ESTABLISHED)
			return false;
	}
	head = KREAD(direct, skb, head);
	switch (bpf_ntohs(KREAD(direct, skb, protocol))) {
	case ETH_P_IP:
		bpf_probe_read_kernel(&proto, 1, head + KREAD(direct, skb, network_header) + 9);
		break;
	case ETH_P_IPV6:
		bpf_probe_read_kernel(&proto, 1, head + KREAD(direct, skb, network_header) + 6);
		break;
	}
	if (proto != 6 /* IPPROTO_TCP */)
		return true;
	bpf_probe_read_kernel(&flags, 1, head + KREAD(direct, skb, transport_header) + 13);
	return (flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
}

/* TRACE_EVENT(net_dev_queue, TP_PROTO(struct sk_buff *skb)), every version:
 * an skb leaving a device, in the sender's context for local sockets. The
 * slot's owner is cleared first and set last, so that a reader never takes
 * a half-written slot for this skb's (read_origin). */
static __always_inline int record_origin(struct sk_buff *skb, const bool direct)
{
	struct sock *sk = KREAD(direct, skb, sk);
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct origin *o;
	__u64 key, now;
	__u32 slot;

	if (!sk || (__u32)pid_tgid == 0 || !may_start_flow(skb, sk, direct))
		return 0;
	/* The slot is hashed from the skb's address as a number (addr_of). */
	key = direct ? addr_of(skb) : (__u64)skb;
	slot = origin_slot(key);
	o = bpf_map_lookup_elem(&origins, &slot);
	if (!o)
		return 0;
	now = bpf_ktime_get_ns();
	o->skb = 0;
	barrier();
	o->ts = now;
	o->pid_tgid = pid_tgid;
	read_task(TASK_BY_ORIGIN, pid_tgid, now, &o->cgroup, o->comm);
	READ_SK_AS(direct, o, sk);
	barrier();
	o->skb = key;
	return 0;
}

/* 5.5+ with BTF: the skb and its socket read with plain loads. */
SEC("tp_btf/net_dev_queue")
int BPF_PROG(tp_btf_origin, struct sk_buff *skb)
{
	return record_origin(skb, true);
}

/* Every version: the same with probe reads. */
SEC("raw_tracepoint/net_dev_queue")
int raw_tp_origin(struct bpf_raw_tracepoint_args *ctx)
{
	return record_origin((struct sk_buff *)ctx->args[0], false);
}

#endif /* CTPROBE_POINT_ORIGIN_BPF_H */
