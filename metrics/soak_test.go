package metrics

import (
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ctprobe/ctprobe/tracer/stream"
	"github.com/ctprobe/ctprobe/tracer/stream/streamtest"
)

// soak feeds passes of a synthetic busy node through the pipeline and the
// exporter, each pass from a new network namespace and new processes (pods
// churn), two minutes apart on the exporter's clock, with a scrape after
// each; it returns the live heap after each pass once warm, and the
// exporter.
func soak(tb testing.TB, passes, warm int) ([]uint64, *Exporter) {
	s, err := streamtest.Synthesize(streamtest.Options{Flows: 600, Established: 1, Races: 0.02, Live: 400, Gap: 20000, Seed: 7})
	if err != nil {
		tb.Fatal(err)
	}
	records := s.CopyRecords()
	h := newFakeHost()
	e := h.exporter(nil)
	reg := prometheus.NewRegistry()
	reg.MustRegister(e)
	p := stream.New(e, false, time.Unix(0, 0), true)
	var heap []uint64
	for pass := range passes {
		ns := uint32(4_100_000_000 + pass)
		streamtest.Churn(records, ns, 1000)
		h.set(uint64(ns), counters(uint64(pass), uint64(pass), 0))
		h.remove(uint64(ns) - 1)
		for _, r := range records {
			if err := p.Record(r); err != nil {
				tb.Fatal(err)
			}
		}
		s.Advance(records)
		h.advance(2 * time.Minute)
		if _, err := reg.Gather(); err != nil {
			tb.Fatal(err)
		}
		if pass >= warm {
			runtime.GC()
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			heap = append(heap, m.HeapAlloc)
		}
	}
	if st := p.Stats(); st.Incidents == 0 {
		tb.Fatal("the stream made no incidents")
	}
	return heap, e
}

// Soak: passes of a busy node's stream, from new pods and processes every
// two minutes, through the pipeline and the exporter, scraped after each.
// Once the correlator is full, the summary's breakdowns at their bound and
// the first namespaces past the grace period, the heap stays where it is:
// the namespaces' series go, nothing grows per pass. (Before the
// summary's breakdowns were bounded it grew by about 5 KiB a pass here: a
// row per process and per namespace.)
func TestSoakHeapFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("a soak: a few seconds")
	}
	// Warm past summary.MaxRows namespaces, one a pass.
	const passes, warm = 1400, 1100
	heap, e := soak(t, passes, warm)
	first, last := heap[0], heap[len(heap)-1]
	t.Logf("heap after pass %d: %d KiB; after pass %d: %d KiB", warm, first>>10, passes-1, last>>10)
	// 300 passes at 1 KiB would be 300 KiB; a heap that does not grow
	// varies by far less than this.
	if last > first+128<<10 {
		t.Errorf("the heap grew from %d KiB to %d KiB over %d passes", first>>10, last>>10, passes-warm)
	}
	// A namespace a pass, two minutes apart: those seen in the last grace
	// period, both ends included (an incident completes in the pass after
	// its records, so the previous pass's namespace is seen then too).
	if n, want := len(e.netns), int(DefaultGrace/(2*time.Minute))+2; n > want {
		t.Errorf("the exporter holds %d namespaces, want at most %d", n, want)
	}
}
