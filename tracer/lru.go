package tracer

import (
	"github.com/cilium/ebpf"

	"github.com/ctprobe/ctprobe/tracer/probe"
)

// localFreeTarget is how many free nodes each CPU's local list of an LRU
// hash map with the common LRU list takes from the global list at a time
// (LOCAL_FREE_TARGET in kernel/bpf/bpf_lru_list.c, 128 since 4.10). Until a
// 2025 change capped it at half of each CPU's share of max_entries
// (bpf_common_lru_populate: target_free), up to that many nodes per CPU sat
// in local free lists, out of other CPUs' reach: with #CPUs x 128 near
// max_entries the map evicts, or steals from other CPUs' pending lists
// (their newest entries), long before it is full (docs/kernel-notes.md,
// LRU maps on many CPUs).
const localFreeTarget = 128

// noCommonLRU is BPF_F_NO_COMMON_LRU: each CPU gets its own LRU list and an
// equal share of max_entries, and evicts only from its own list.
const noCommonLRU = 1 << 1

// lruMap is how one LRU hash map is sized for the machine.
type lruMap struct {
	name string
	// working is the number of entries the map must be able to hold at
	// once (at least what bpf/ declares); 0 takes the declared size.
	working func(Options) uint32
	// perCPU, if set, gives the map per-CPU LRU lists with at least this
	// many entries each: for state that a call's entry leaves for its exit,
	// which runs on the same CPU unless the task migrated, and of which a
	// CPU has only a few in flight. Maps whose entries another CPU reads
	// long after (histories, the winner index) keep the common
	// list, with room for what the CPUs' local lists can hold back.
	perCPU uint32
}

var lruMaps = []lruMap{
	{name: probe.BPFMapEntries, perCPU: 64},
	{name: probe.BPFMapTaskEntries, perCPU: 64},
	{name: probe.BPFMapPairs, perCPU: 16},
	{name: probe.BPFMapClashes, perCPU: 16},
	{name: probe.BPFMapConfirmed},
}

// sizeLRUMaps sets the size and LRU flavour of every LRU hash map for a
// machine with cpus possible CPUs.
func sizeLRUMaps(spec *ebpf.CollectionSpec, opts Options, cpus int) {
	for _, m := range lruMaps {
		ms := spec.Maps[m.name]
		want := ms.MaxEntries
		if m.working != nil {
			want = m.working(opts)
		}
		switch {
		case want <= 1:
			// A map the mode does not use: the smallest the kernel takes.
			ms.MaxEntries = 1
		case m.perCPU > 0:
			ms.Flags |= noCommonLRU
			ms.MaxEntries = max(want, uint32(cpus)*m.perCPU)
		default:
			ms.MaxEntries = want + uint32(cpus)*localFreeTarget
		}
	}
}
