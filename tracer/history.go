package tracer

import (
	"fmt"
	"math/bits"

	"github.com/cilium/ebpf"

	"github.com/ctprobe/ctprobe/tracer/probe"
)

// sizeHistory sizes the history map, an array of slots in pairs that a
// hash of a ct's address picks (bpf/history.bpf.h): the power of two at or
// above opts.History (at least a pair) where the mode follows every flow,
// else one slot, which no program uses. The programs take a slot with the
// mask it sets.
func sizeHistory(spec *ebpf.CollectionSpec, opts Options) error {
	slots := uint32(1)
	if opts.Mode.FollowsFlows() {
		slots = historySlots(orDefault(opts.History, DefaultHistory))
	}
	spec.Maps[probe.BPFMapHist].MaxEntries = slots
	if err := spec.Variables[probe.BPFVarHistSlotMask].Set(slots - 1); err != nil {
		return fmt.Errorf("set %s: %w", probe.BPFVarHistSlotMask, err)
	}
	return nil
}

// historySlots is the power of two at or above n, at least 2 (n >= 1).
func historySlots(n int) uint32 {
	return max(2, uint32(1)<<bits.Len32(uint32(n-1)))
}
