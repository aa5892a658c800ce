/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Filters: the --proto/--host/--port/--netns/--pid globals and the checks
 * that apply them to a record.
 */
#ifndef CTPROBE_FILTER_BPF_H
#define CTPROBE_FILTER_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "ctprobe.h"
#include "history.bpf.h"

/* Filters, set by the Go side before load (zero means "any"). */
const volatile __u8 filter_proto = 0;
const volatile __u16 filter_port = 0; /* network byte order */
const volatile __u16 filter_host_family = 0;
const volatile __u8 filter_host[16] = {};
const volatile __u32 filter_netns = 0;
const volatile __u32 filter_pid = 0;

static __always_inline bool addr_eq(const __u8 *a, const volatile __u8 *b, __u16 family)
{
	int n = family == 10 /* AF_INET6 */ ? 16 : 4;
	for (int i = 0; i < 16; i++) {
		if (i < n && a[i] != b[i])
			return false;
	}
	return true;
}

static __always_inline bool tuple_has_host(const struct tuple *t)
{
	return t->l3num == filter_host_family &&
	       (addr_eq(t->src, filter_host, t->l3num) || addr_eq(t->dst, filter_host, t->l3num));
}

/* --proto/--host/--port/--netns/--pid, applied before anything is recorded.
 * Host and port match either end of either tuple, so the pre-NAT ClusterIP
 * and the post-NAT endpoint both select the flow. */
static __always_inline bool wanted(const struct event *e, __u32 tgid)
{
	if (filter_proto && e->orig.protonum != filter_proto)
		return false;
	if (filter_netns && e->netns != filter_netns)
		return false;
	if (filter_pid && tgid != filter_pid)
		return false;
	if (filter_port && e->orig.sport != filter_port && e->orig.dport != filter_port &&
	    e->reply.sport != filter_port && e->reply.dport != filter_port)
		return false;
	if (filter_host_family && !tuple_has_host(&e->orig) && !tuple_has_host(&e->reply))
		return false;
	return true;
}

static __always_inline bool history_wanted(struct history *h, struct event *e)
{
	__u32 tgid = h ? h->tgid : (__u32)(e->pid_tgid >> 32);
	return wanted(e, tgid);
}

#endif /* CTPROBE_FILTER_BPF_H */
