/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Maps of slots indexed by a hash of a kernel object's address: the
 * origins, one per skb (kernel_reads.bpf.h), and the histories, one per ct
 * (history.bpf.h). Writing a slot costs a few stores where an LRU hash
 * map's update takes its bucket and LRU-list locks with interrupts off; an
 * object whose address hashes to a taken slot takes it over, as an LRU map
 * would have evicted its oldest entry. Each slot names its owner, cleared
 * (or marked as being written) first and set last by a writer, and checked
 * again by a reader after its copy: another CPU may be writing the slot for
 * another object meanwhile.
 */
#ifndef CTPROBE_SLOTS_BPF_H
#define CTPROBE_SLOTS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

/* Fibonacci hashing: the product's high bits depend on every bit of the
 * address above its alignment (align_log2 bits that are the same for every
 * object of the slab cache). */
static __always_inline __u64 addr_hash(__u64 addr, unsigned int align_log2)
{
	return (addr >> align_log2) * 0x9E3779B97F4A7C15ULL;
}

/* A typed pointer's address as a number, to hash: a tracing program's
 * BTF-typed argument (and what is loaded through it) is a pointer to the
 * verifier, which refuses the hash's shift on it (6.12: "pointer arithmetic
 * with >>= operator prohibited"), where a helper's copy is a scalar. */
static __always_inline __u64 addr_of(const void *p)
{
	__u64 addr = 0;

	bpf_probe_read_kernel(&addr, sizeof(addr), &p);
	return addr;
}

#endif /* CTPROBE_SLOTS_BPF_H */
