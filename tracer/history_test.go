package tracer

import (
	"testing"

	"github.com/ctprobe/ctprobe/tracer/mode"
	"github.com/ctprobe/ctprobe/tracer/probe"
)

// The history map has at least the slots asked for, a power of two (a
// pair at least) whose mask the programs get, in the modes that follow
// every flow; the others take one slot.
func TestHistorySlots(t *testing.T) {
	for _, tc := range []struct {
		opts      Options
		atLeast   int
		unusedMap bool
	}{
		{Options{Mode: mode.Timeline}, DefaultHistory, false},
		{Options{Mode: mode.AllTimeline, History: 1000}, 1000, false},
		{Options{Mode: mode.Timeline, History: 1}, 2, false},
		{Options{Mode: mode.Timeline, History: MaxHistory}, MaxHistory, false},
		{Options{Mode: mode.Timeline, History: 4097}, 4097, false},
		{Options{Mode: mode.Default, History: 1000}, 1, true},
		{Options{Mode: mode.All}, 1, true},
	} {
		spec, err := probe.LoadBPF()
		if err != nil {
			t.Fatal(err)
		}
		if err := sizeHistory(spec, tc.opts); err != nil {
			t.Fatal(err)
		}
		slots := spec.Maps[probe.BPFMapHist].MaxEntries
		var mask uint32
		if err := spec.Variables[probe.BPFVarHistSlotMask].Get(&mask); err != nil {
			t.Fatal(err)
		}
		switch {
		case tc.unusedMap && slots != 1:
			t.Errorf("%v: unused history map has %d slots", tc.opts.Mode, slots)
		case int(slots) < tc.atLeast || slots&(slots-1) != 0 || (slots > 1 && int(slots/2) >= tc.atLeast):
			t.Errorf("%+v: %d slots, want the power of two at or above %d", tc.opts, slots, tc.atLeast)
		case mask != slots-1:
			t.Errorf("%+v: mask %#x for %d slots", tc.opts, mask, slots)
		}
	}
}
