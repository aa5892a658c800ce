package tracer

import (
	"testing"

	"github.com/cilium/ebpf"

	"github.com/ctprobe/ctprobe/tracer/mode"
	"github.com/ctprobe/ctprobe/tracer/probe"
)

// On any number of CPUs, every LRU map holds its working set: a map with
// the common LRU list has room for it beside what every CPU's local free
// list can hold back, and a map with per-CPU lists gives every CPU its
// share.
func TestLRUMapsHoldTheirWorkingSet(t *testing.T) {
	for _, cpus := range []int{1, 2, 64, 192} {
		for _, opts := range []Options{{Mode: mode.Timeline, History: 1000}, {Mode: mode.Default}} {
			spec, err := probe.LoadBPF()
			if err != nil {
				t.Fatal(err)
			}
			declared := map[string]uint32{}
			for name, ms := range spec.Maps {
				declared[name] = ms.MaxEntries
			}
			sizeLRUMaps(spec, opts, cpus)
			for name, ms := range spec.Maps {
				if ms.Type != ebpf.LRUHash {
					continue
				}
				sized := false
				for _, m := range lruMaps {
					sized = sized || m.name == name
				}
				if !sized {
					t.Errorf("LRU map %s is not sized for the CPU count", name)
				}
				want := declared[name]
				if ms.Flags&noCommonLRU != 0 {
					if ms.MaxEntries < want || int(ms.MaxEntries)/cpus < 16 {
						t.Errorf("%d CPUs: per-CPU %s: %d entries for a working set of %d", cpus, name, ms.MaxEntries, want)
					}
				} else if int(ms.MaxEntries)-cpus*localFreeTarget < int(want) {
					t.Errorf("%d CPUs: %s: %d entries hold %d beside %d per CPU held back", cpus, name, ms.MaxEntries, want, localFreeTarget)
				}
			}
		}
	}
}
