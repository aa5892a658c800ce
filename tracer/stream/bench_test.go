package stream

// Throughput of decode and correlate over the busy-node mix (package streamtest).
// One op is one event, except in BenchmarkReport, where it is one whole
// capture. Every benchmark reports events/s, ns/event and allocs/event (the
// exact average, where allocs/op rounds down); those of one event per op
// cpu-ns/event too (cpuTime). Run them on one core:
//
//	go test -run='^$' -bench=. -benchmem -cpu 1 -count 5 ./tracer/stream/
//
// or scripts/bench-go.sh for a table of medians. These are measurements,
// never pass/fail: the allocation and memory tests are in alloc_test.go.

import (
	"bytes"
	"errors"
	"io"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/ctprobe/ctprobe/tracer/capture"
	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/render"
	"github.com/ctprobe/ctprobe/tracer/stream/streamtest"
)

// perEvent runs step on every event in turn, for as long as the benchmark
// wants, moving the records' time forward each time it wraps so that the
// stream goes on (wrap, if not nil, does that for the records).
func perEvent(b *testing.B, n int, wrap func(), step func(i int)) {
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	cpu0 := cpuTime(b)
	i, events := 0, 0
	for b.Loop() {
		if i == n {
			b.StopTimer()
			if wrap != nil {
				wrap()
			}
			i = 0
			b.StartTimer()
		}
		step(i)
		i++
		events++
	}
	runtime.ReadMemStats(&m1)
	report(b, events, m1.Mallocs-m0.Mallocs)
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(events), "cpu-ns/event")
}

func report(b *testing.B, events int, mallocs uint64) {
	if events == 0 {
		return
	}
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(events)/sec, "events/s")
	b.ReportMetric(sec*1e9/float64(events), "ns/event")
	b.ReportMetric(float64(mallocs)/float64(events), "allocs/event")
}

// cpuTime is the CPU time the process used so far, user and system, in
// ns: beside the wall-clock events/s, what an event costs on a machine
// whose other work takes the CPU from the benchmark at times. The garbage
// collector's threads count too, and the wraps' StopTimer time.
func cpuTime(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkDecode decodes the mix's records.
func BenchmarkDecode(b *testing.B) {
	s := streamtest.BusyCapture(b)
	var ev event.Event
	b.ReportAllocs()
	perEvent(b, len(s.Records), nil, func(i int) {
		if err := event.Decode(s.Records[i], &ev); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkCorrelate correlates decoded events.
func BenchmarkCorrelate(b *testing.B) {
	s := streamtest.BusyCapture(b)
	evs := s.Decoded(b)
	c := incident.New(incident.Options{})
	incidents := 0
	b.ReportAllocs()
	perEvent(b, len(evs), func() {
		for i := range evs {
			evs[i].Time += s.Span
		}
	}, func(i int) {
		incidents += len(c.Add(&evs[i]))
	})
	b.ReportMetric(float64(c.Stats().Evicted+c.Stats().Expired)/float64(c.Stats().Events), "evicted/event")
}

// synthesized makes a capture of mix opt.
func synthesized(opt func() streamtest.Options) func(testing.TB) *streamtest.Capture {
	return func(tb testing.TB) *streamtest.Capture {
		s, err := streamtest.Synthesize(opt())
		if err != nil {
			tb.Fatal(err)
		}
		return s
	}
}

// BenchmarkDecodeCorrelate is both: what a Processor does for every record
// before rendering. On the busy-node mix (races: its incidents allocate
// their reasons, timelines and names), on the same mix without races
// (ordinary: the steady state of every other event, which allocates
// nothing), and on --all's ordinary events (all-ordinary: a confirm per
// new flow, the correlator's part of Processor/all-ordinary).
func BenchmarkDecodeCorrelate(b *testing.B) {
	for _, mix := range []struct {
		name    string
		capture func(testing.TB) *streamtest.Capture
	}{
		{"races", streamtest.BusyCapture},
		{"ordinary", synthesized(streamtest.OrdinaryNode)},
		{"all-ordinary", synthesized(streamtest.OrdinaryAllNode)},
	} {
		b.Run(mix.name, func(b *testing.B) {
			s := mix.capture(b)
			records := s.CopyRecords()
			c := incident.New(incident.Options{})
			var ev event.Event
			b.ReportAllocs()
			perEvent(b, len(records), func() { s.Advance(records) }, func(i int) {
				if err := event.Decode(records[i], &ev); err != nil {
					b.Fatal(err)
				}
				c.Add(&ev)
			})
		})
	}
}

// BenchmarkProcessor is the whole Processor, rendering to /dev/null (a
// write(2) whenever the renderer writes out what it holds), printing
// incidents only (the default of trace and report) or, with --all, every
// event too; "names" names the pods of every incident's packets from a
// live Resolver (its table, and each sender's cgroup file once a second),
// the cost of enrichment. The mixes: "all-timeline" is every probe point's
// events with races (--all --timeline), "all" what --all records (a
// confirm per new flow, and the races' clashes), "all-ordinary" the same
// without races: --all's ordinary events, in text and JSON.
func BenchmarkProcessor(b *testing.B) {
	allOrdinary := synthesized(streamtest.OrdinaryAllNode)
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devNull.Close()
	for _, mode := range []struct {
		name       string
		capture    func(testing.TB) *streamtest.Capture
		all, names bool
		format     string
	}{
		{"incidents", streamtest.BusyCapture, false, false, "text"},
		{"incidents+names", streamtest.BusyCapture, false, true, "text"},
		{"all-timeline", streamtest.BusyCapture, true, false, "text"},
		{"all/text", streamtest.AllCapture, true, false, "text"},
		{"all/json", streamtest.AllCapture, true, false, "json"},
		{"all-ordinary/text", allOrdinary, true, false, "text"},
		{"all-ordinary/json", allOrdinary, true, false, "json"},
	} {
		b.Run(mode.name, func(b *testing.B) {
			s := mode.capture(b)
			records := s.CopyRecords()
			out, err := render.New(devNull, mode.format, render.Options{})
			if err != nil {
				b.Fatal(err)
			}
			p := New(out, mode.all, time.Unix(0, 0), true)
			if mode.names {
				p.SetNames(namedNode(b))
			}
			b.ReportAllocs()
			perEvent(b, len(records), func() { s.Advance(records) }, func(i int) {
				if err := p.Record(records[i]); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// BenchmarkReport is `ctprobe report -r` of the capture file (incidents to
// io.Discard): read and checksum every frame, decode, correlate, render,
// flush. One op is the whole capture, from a fresh Processor.
func BenchmarkReport(b *testing.B) {
	s := streamtest.BusyCapture(b)
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	events := 0
	b.ReportAllocs()
	for b.Loop() {
		rd, err := capture.NewReader(bytes.NewReader(s.File))
		if err != nil {
			b.Fatal(err)
		}
		p := New(render.NewText(io.Discard, render.Options{}), false, time.Unix(0, 0), true)
		for {
			rec, err := rd.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if rec.Type == capture.TypeSample {
				if err := p.Record(rec.Raw); err != nil {
					b.Fatal(err)
				}
				events++
			}
		}
		if _, err := p.Finish(time.Unix(1, 0), nil); err != nil {
			b.Fatal(err)
		}
	}
	runtime.ReadMemStats(&m1)
	report(b, events, m1.Mallocs-m0.Mallocs)
}
