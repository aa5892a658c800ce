package loss

import (
	"math"
	"testing"

	"github.com/ctprobe/ctprobe/tracer/probe"
)

// The BPF side's enum loss_kind and this package agree: every index below
// LOSS_MAX is either a loss kind named here or one of the two counters that
// are not losses, and every kind the BPF side counts is a known kind.
func TestBPFLossKindsAgree(t *testing.T) {
	notLosses := map[uint32]bool{uint32(probe.BPFLossKindLOSS_SENT): true, uint32(probe.BPFLossKindLOSS_NESTED): true}
	for i := uint32(0); i < uint32(probe.BPFLossKindLOSS_MAX); i++ {
		k, ok := FromBPF[i]
		if ok == notLosses[i] {
			t.Errorf("loss_kind %d: named %q here, counter %v", i, k, notLosses[i])
		}
	}
	known := map[Kind]bool{}
	for _, k := range Kinds {
		known[k] = true
		if k.Meaning() == string(k) {
			t.Errorf("%s has no meaning", k)
		}
	}
	for i, k := range FromBPF {
		if !known[k] || i >= uint32(probe.BPFLossKindLOSS_MAX) {
			t.Errorf("FromBPF[%d] = %q: unknown kind or index past LOSS_MAX", i, k)
		}
	}
}

func TestAddSaturates(t *testing.T) {
	for _, c := range []struct{ total, n, want uint64 }{
		{0, 0, 0},
		{3, 4, 7},
		{math.MaxUint64 - 5, 5, math.MaxUint64},
		{math.MaxUint64, 5, math.MaxUint64},
		{math.MaxUint64 - 1, math.MaxUint64, math.MaxUint64},
	} {
		if got := Add(c.total, c.n); got != c.want {
			t.Errorf("Add(%d, %d) = %d, want %d", c.total, c.n, got, c.want)
		}
	}
}
