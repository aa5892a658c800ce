// Package loss names what ctprobe could not deliver or pair: the kinds of
// loss that the BPF side, the kernel and the reader count. The tracer
// reads them, capture files keep them, summaries and metrics add them up,
// all with these names.
package loss

import (
	"math"
	"math/bits"

	"github.com/ctprobe/ctprobe/tracer/probe"
)

// Kind is a kind of loss. Capture files from other machines may carry
// kinds this version does not know; they are kept and printed as they are.
type Kind string

const (
	Ringbuf   Kind = "ringbuf"    // bpf_ringbuf_output failed: the buffer was full
	NoEntry   Kind = "no-entry"   // an exit probe found no saved entry
	NoHistory Kind = "no-history" // --timeline: a ct's history was evicted before its incident
	// KretprobeMissed: the kernel's kretprobe instances (maxactive) ran out.
	KretprobeMissed Kind = "kretprobe-missed"
	// RecursionMissed: the kernel skipped a program because another BPF
	// program was running on the CPU (its recursion_misses).
	RecursionMissed Kind = "recursion-missed"
)

// Kinds are the known kinds, in the order summaries print them.
var Kinds = []Kind{Ringbuf, NoEntry, NoHistory, KretprobeMissed, RecursionMissed}

// FromBPF are the kinds the BPF programs count in their losses map, by
// index (enum loss_kind in bpf/ctprobe.h). The map's other indexes are
// counters that are not losses.
var FromBPF = map[uint32]Kind{
	uint32(probe.BPFLossKindLOSS_RINGBUF):    Ringbuf,
	uint32(probe.BPFLossKindLOSS_NO_ENTRY):   NoEntry,
	uint32(probe.BPFLossKindLOSS_NO_HISTORY): NoHistory,
}

// Meaning says what a kind of loss is, for people.
func (k Kind) Meaning() string {
	switch k {
	case Ringbuf:
		return "ring buffer full"
	case NoEntry:
		return "exit probe without a saved entry"
	case NoHistory:
		return "ct history evicted before its incident"
	case KretprobeMissed:
		return "kretprobe missed (maxactive exceeded)"
	case RecursionMissed:
		return "probe skipped (another BPF program was running on the CPU)"
	}
	return string(k)
}

// Count is a number of losses of one kind.
type Count struct {
	Kind Kind
	// Where names the function (kretprobe-missed) or program
	// (recursion-missed) the kernel counted it for; "" otherwise.
	Where string
	// CPU the losses were counted on; -1 when not counted per CPU.
	CPU   int
	Count uint64
}

// Add adds n losses to a total, saturating at the largest count instead of
// wrapping: a capture file may hold any counts, and a total that wrapped
// would report fewer losses than happened.
func Add(total, n uint64) uint64 {
	sum, carry := bits.Add64(total, n, 0)
	if carry != 0 {
		return math.MaxUint64
	}
	return sum
}
