/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Maps that are empty almost always, and whose lookups a hot path skips
 * while they are: a clash's records, kept for the microseconds of one call
 * of confirm, and looked up at confirm's exit for every new flow. A lookup
 * costs a hash of the key and a bucket walk, what a bpftrace one-liner's
 * whole count costs; reading the map's count costs a load.
 */
#ifndef CTPROBE_STORED_BPF_H
#define CTPROBE_STORED_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

/* count: the entries stored and not deleted since. It is more than the map
 * holds where the LRU evicted an entry or an update replaced one, never
 * fewer: each entry is counted before it is stored, and uncounted only
 * once it is deleted. */
static __always_inline long stored_update(void *map, __u64 *count, const void *key, const void *value)
{
	long err;

	__sync_fetch_and_add(count, 1);
	err = bpf_map_update_elem(map, key, value, BPF_ANY);
	if (err)
		__sync_fetch_and_add(count, -1);
	return err;
}

static __always_inline void stored_delete(void *map, __u64 *count, const void *key)
{
	if (bpf_map_delete_elem(map, key) == 0)
		__sync_fetch_and_add(count, -1);
}

static __always_inline void *stored_lookup(void *map, const __u64 *count, const void *key)
{
	if (!*count)
		return NULL;
	return bpf_map_lookup_elem(map, key);
}

#endif /* CTPROBE_STORED_BPF_H */
