/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Record building: the ring buffer and the loss counters, and the scratch
 * events that a probe fills in and sends (the layout is in ctprobe.h).
 */
#ifndef CTPROBE_RECORD_BPF_H
#define CTPROBE_RECORD_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "ctprobe.h"

/* Keep the record enums in BTF so bpf2go generates their Go constants. */
const enum event_kind *unused_event_kind __attribute__((unused));
const enum event_flag *unused_event_flag __attribute__((unused));
const enum loss_kind *unused_loss_kind __attribute__((unused));
const enum record_layout *unused_record_layout __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22); /* resized by the Go side */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LOSS_MAX);
	__type(key, __u32);
	__type(value, __u64);
} losses SEC(".maps");

/* Scratch space: an event is too big for the 512-byte stack (so are a
 * history and a clash pair, which have scratch maps of their own, each used
 * by one program). Each probe point builds in a slot of its own: a
 * trampoline program runs with migration disabled but preemption on
 * (__bpf_prog_enter_recur: rcu_read_lock and migrate_disable), so on a
 * preemptible or PREEMPT_RT kernel another task may run another program on
 * the same CPU while this one is half-way through a record. The same
 * program cannot run twice at once on a CPU (its per-CPU `active` count,
 * 5.12+, ca06f55b9002; such a run is skipped and counted in its
 * recursion_misses), and kprobe programs run with preemption off; so a
 * slot that one point's programs alone use is never shared (docs/
 * kernel-notes.md, Attaching and detaching). */
enum scratch_slot {
	SCRATCH_CT_IN,
	SCRATCH_NAT,
	SCRATCH_CONFIRM,
	SCRATCH_WINNER, /* confirm's exit, for the CLASH record of a winner found by tuple */
	SCRATCH_REPLAY, /* confirm's exit, for the NAT records a history replays */
	SCRATCH_SLOTS,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SCRATCH_SLOTS);
	__type(key, __u32);
	__type(value, struct event);
} scratch SEC(".maps");

static __always_inline void count_loss(__u32 kind)
{
	__u64 *n = bpf_map_lookup_elem(&losses, &kind);
	if (n)
		*n += 1;
}

static __always_inline void output(struct event *e)
{
	count_loss(LOSS_SENT);
	if (bpf_ringbuf_output(&events, e, sizeof(*e), 0))
		count_loss(LOSS_RINGBUF);
}

static __always_inline void init_event(struct event *e, __u8 kind)
{
	__builtin_memset(e, 0, sizeof(*e));
	e->kind = kind;
	e->hook = 0xff;
	e->ts = bpf_ktime_get_ns();
	e->cpu = bpf_get_smp_processor_id();
	e->pid_tgid = bpf_get_current_pid_tgid();
	if ((__u32)e->pid_tgid == 0)
		e->flags |= EVENT_F_SOFTIRQ_KEY;
	e->cgroup = bpf_get_current_cgroup_id();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
}

static __always_inline struct event *new_event(enum scratch_slot slot, __u8 kind)
{
	__u32 key = slot;
	struct event *e = bpf_map_lookup_elem(&scratch, &key);
	if (e)
		init_event(e, kind);
	return e;
}

#endif /* CTPROBE_RECORD_BPF_H */
