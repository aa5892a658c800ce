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

#include "kernel_reads.bpf.h"

/* TRACE_EVENT(net_dev_queue, TP_PROTO(struct sk_buff *skb)), every version:
 * an skb leaving a device, in the sender's context for local sockets. */
SEC("raw_tracepoint/net_dev_queue")
int raw_tp_origin(struct bpf_raw_tracepoint_args *ctx)
{
	struct sk_buff *skb = (struct sk_buff *)ctx->args[0];
	struct sock *sk = BPF_CORE_READ(skb, sk);
	struct origin o = {};
	__u64 key = (__u64)skb;

	if (!sk || (__u32)bpf_get_current_pid_tgid() == 0)
		return 0;
	o.ts = bpf_ktime_get_ns();
	o.pid_tgid = bpf_get_current_pid_tgid();
	o.cgroup = bpf_get_current_cgroup_id();
	bpf_get_current_comm(o.comm, sizeof(o.comm));
	READ_SK(&o, sk);
	bpf_map_update_elem(&origins, &key, &o, BPF_ANY);
	return 0;
}

#endif /* CTPROBE_POINT_ORIGIN_BPF_H */
