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

/* Who reads the current task's comm and cgroup: each probe point's programs
 * have a cache entry of their own, for the reason each has a scratch slot
 * (one point's programs never interleave on a CPU; two points' may). */
enum task_reader {
	TASK_BY_CT_IN,
	TASK_BY_NAT,
	TASK_BY_CONFIRM,
	TASK_BY_CLASH,
	TASK_BY_ORIGIN,
	TASK_READERS,
};

/* The task a point last recorded on this CPU, with its comm and cgroup: a
 * flow's packets, and a flood's flows, mostly come from one task, and the
 * two helper calls that read them were a third of the origin's cost on an
 * established UDP flow and a sixth of --all's profile per new flow in the bench
 * (bpf_get_current_cgroup_id takes rcu_read_lock). A comm or cgroup that
 * changes (exec, prctl, a move to another cgroup) shows within
 * TASK_REREAD_NS. */
struct task_seen {
	__u64 pid_tgid;
	__u64 read_at;
	__u64 cgroup;
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TASK_READERS);
	__type(key, __u32);
	__type(value, struct task_seen);
} tasks_seen SEC(".maps");

/* Short enough that a renamed task shows its new name at once to a person,
 * long enough that a flood's records read the task about once per hundred. */
#define TASK_REREAD_NS 10000000ULL

/* The cgroup and comm of the current task (pid_tgid) as reader saw it last
 * on this CPU, read again if it is another task or TASK_REREAD_NS old at
 * now. */
static __always_inline void read_task(enum task_reader reader, __u64 pid_tgid, __u64 now, __u64 *cgroup, char *comm)
{
	__u32 key = reader;
	struct task_seen *t = bpf_map_lookup_elem(&tasks_seen, &key);

	if (!t) { /* never: the key is in range */
		*cgroup = bpf_get_current_cgroup_id();
		bpf_get_current_comm(comm, sizeof(t->comm));
		return;
	}
	if (t->pid_tgid != pid_tgid || now - t->read_at > TASK_REREAD_NS) {
		t->pid_tgid = pid_tgid;
		t->read_at = now;
		t->cgroup = bpf_get_current_cgroup_id();
		bpf_get_current_comm(t->comm, sizeof(t->comm));
	}
	*cgroup = t->cgroup;
	__builtin_memcpy(comm, t->comm, sizeof(t->comm));
}

static __always_inline void init_event(struct event *e, __u8 kind, enum task_reader reader)
{
	__builtin_memset(e, 0, sizeof(*e));
	e->kind = kind;
	e->hook = 0xff;
	e->ts = bpf_ktime_get_ns();
	e->cpu = bpf_get_smp_processor_id();
	e->pid_tgid = bpf_get_current_pid_tgid();
	if ((__u32)e->pid_tgid == 0)
		e->flags |= EVENT_F_SOFTIRQ_KEY;
	read_task(reader, e->pid_tgid, e->ts, &e->cgroup, e->comm);
}

static __always_inline struct event *new_event(enum scratch_slot slot, __u8 kind, enum task_reader reader)
{
	__u32 key = slot;
	struct event *e = bpf_map_lookup_elem(&scratch, &key);
	if (e)
		init_event(e, kind, reader);
	return e;
}

#endif /* CTPROBE_RECORD_BPF_H */
