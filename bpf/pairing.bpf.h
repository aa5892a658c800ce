/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Entry/exit pairing: the state an entry program saves for its exit
 * program, keyed by the call's object (fentry/fexit) or by its task
 * (kprobe/kretprobe), where nested calls form a stack.
 */
#ifndef CTPROBE_PAIRING_BPF_H
#define CTPROBE_PAIRING_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "record.bpf.h"
#include "compiler.bpf.h"

/* State saved at a function's entry for its exit probe, keyed by the call:
 * its skb or ct (fentry/fexit see the arguments at both ends), or its task
 * (a kretprobe sees none: pid_key()). */
struct call_key {
	__u64 id;
	bool by_task;
};

struct entry_key {
	__u64 id; /* skb or ct pointer, or pid_key() */
	__u32 kind;
	__u32 pad;
};

struct entry {
	__u64 skb;
	__u64 ct;
	__u64 tuple; /* get_unique_tuple: where the chosen tuple is written */
	__u32 hook;
	__u32 manip;
	struct tuple orig;   /* confirm: the loser's tuples, read before it can be freed */
	struct tuple before; /* NAT: REPLY before the binding; confirm: the loser's REPLY */
	struct nat_range range;
};

/* By skb or ct: one call at a time per object, so one slot per key. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct entry_key);
	__type(value, struct entry);
} entries SEC(".maps");

/* By task, calls nest: a softirq runs on the stack of the task it
 * interrupted (on an interrupt's exit, or at the local_bh_enable that ends
 * __nf_conntrack_confirm, 4.19 to 6.18), so pid_key() gives its calls the
 * task's key, and they enter and return inside the task's own call. With
 * one slot per key the inner call took the outer's entry (VM lab,
 * vxlan-masq on 5.10: the outer return then counted LOSS_NO_ENTRY), so a
 * task's entries form a stack. Nesting is at most task and softirq; the
 * other slots absorb entries whose return the kernel missed (kretprobe
 * maxactive, counted there), and a full stack starts again from the bottom.
 * A power of two, for slot_index. */
#define ENTRY_DEPTH 4

struct saved_entries {
	__u32 depth;
	__u32 pad;
	struct entry slot[ENTRY_DEPTH];
};

/* A task's stack stays when it empties, to be found by the task's next
 * call with one lookup; the LRU drops those of tasks gone. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct entry_key);
	__type(value, struct saved_entries);
} task_entries SEC(".maps");

/* The values a key starts from (map values: the helpers take them). */
const struct entry empty_entry = {};
const struct saved_entries empty_stack = {};

/* Entry/exit pairing for kprobes: kretprobes see no arguments. Softirq work on
 * an idle CPU runs as pid 0 on every CPU, so key those by CPU instead. */
static __always_inline __u64 pid_key(void)
{
	__u64 id = bpf_get_current_pid_tgid();
	if ((__u32)id == 0)
		return 0xffffffff00000000ULL | bpf_get_smp_processor_id();
	return id;
}

/* A slot index the verifier can bound (5.10's loses the bound of a
 * compare that clang folds into arithmetic): hidden from clang (libbpf's
 * barrier_var), masked. */
static __always_inline __u32 slot_index(__u32 d)
{
	barrier_var(d);
	return d & (ENTRY_DEPTH - 1);
}

/* A stack's push and pop (the task entries' and the task storage's) are
 * ordered so that a call nesting between any two steps would leave the
 * outer one's slot intact: the depth is raised before the slot is written,
 * and lowered only after it is read. What nests in practice is the kernel
 * code between an entry program and its exit program: kprobe programs do
 * not run inside one another on a CPU (bpf_prog_active).
 *
 * push_slot raises *depth and returns the slot to write. */
static __always_inline __u32 push_slot(__u32 *depth)
{
	__u32 d = *depth;

	if (d >= ENTRY_DEPTH)
		d = 0;
	else if (d > 0)
		count_loss(LOSS_NESTED);
	*depth = d + 1;
	barrier();
	return slot_index(d);
}

/* The depth a pop leaves in *top (its slot is slot_index(*top), which the
 * caller reads before storing *top), or false when the stack is empty. */
static __always_inline bool pop_depth(__u32 depth, __u32 *top)
{
	*top = depth - 1;
	if (*top >= ENTRY_DEPTH) {
		count_loss(LOSS_NO_ENTRY);
		return false;
	}
	return true;
}

static __always_inline struct call_key task_call(void)
{
	return (struct call_key){ .id = pid_key(), .by_task = true };
}

static __always_inline struct call_key object_call(const void *p)
{
	return (struct call_key){ .id = (__u64)p };
}

/* Where an entry program saves its call's state: zeroed, for the caller to
 * fill in place (an entry on the BPF stack would not fit beside
 * confirm_enter's). NULL when the map refused; the exit then counts
 * LOSS_NO_ENTRY. */
static __always_inline struct entry *save_entry(struct call_key c, __u32 kind)
{
	struct entry_key k = { .id = c.id, .kind = kind };
	struct saved_entries *s;
	struct entry *v;

	if (!c.by_task) {
		bpf_map_update_elem(&entries, &k, &empty_entry, BPF_ANY);
		return bpf_map_lookup_elem(&entries, &k);
	}
	s = bpf_map_lookup_elem(&task_entries, &k);
	if (!s) {
		bpf_map_update_elem(&task_entries, &k, &empty_stack, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&task_entries, &k);
		if (!s)
			return NULL;
	}
	v = &s->slot[push_slot(&s->depth)];
	__builtin_memset(v, 0, sizeof(*v));
	return v;
}

static __always_inline bool take_entry(struct call_key c, __u32 kind, struct entry *out)
{
	struct entry_key k = { .id = c.id, .kind = kind };
	struct saved_entries *s;
	struct entry *v;
	__u32 top;

	if (!c.by_task) {
		v = bpf_map_lookup_elem(&entries, &k);
		if (!v) {
			count_loss(LOSS_NO_ENTRY);
			return false;
		}
		__builtin_memcpy(out, v, sizeof(*out));
		bpf_map_delete_elem(&entries, &k);
		return true;
	}
	s = bpf_map_lookup_elem(&task_entries, &k);
	if (!s) {
		count_loss(LOSS_NO_ENTRY);
		return false;
	}
	if (!pop_depth(s->depth, &top))
		return false;
	__builtin_memcpy(out, &s->slot[slot_index(top)], sizeof(*out));
	barrier();
	s->depth = top;
	return true;
}

#endif /* CTPROBE_PAIRING_BPF_H */
