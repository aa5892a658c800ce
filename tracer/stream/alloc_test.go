package stream

// Allocation and memory bounds of decode and correlate. Unlike timings,
// these are deterministic, so they are asserted.

import (
	"bytes"
	"encoding/binary"
	"io"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/probe"
	"github.com/ctprobe/ctprobe/tracer/render"
	"github.com/ctprobe/ctprobe/tracer/stream/streamtest"
)

// feedPass decodes and correlates every record once and moves their time
// forward for the next pass. It returns the incidents completed.
func feedPass(tb testing.TB, s *streamtest.Capture, records [][]byte, c *incident.Correlator) int {
	var ev event.Event
	n := 0
	for _, r := range records {
		if err := event.Decode(r, &ev); err != nil {
			tb.Fatal(err)
		}
		n += len(c.Add(&ev))
	}
	s.Advance(records)
	return n
}

// In steady state (tables full, records evicted, ct pointers reused) the
// ordinary traffic of a busy node, new flows and established ones on two
// CPUs, IPv4 and IPv6, DNS and TCP, costs no allocation at all.
func TestSteadyStateAllocatesNothing(t *testing.T) {
	s, err := streamtest.Synthesize(streamtest.OrdinaryNode())
	if err != nil {
		t.Fatal(err)
	}
	records := s.CopyRecords()
	c := incident.New(incident.Options{})
	feedPass(t, s, records, c) // fill the correlator
	allocs := testing.AllocsPerRun(2, func() {
		if n := feedPass(t, s, records, c); n != 0 {
			t.Errorf("%d incidents from ordinary traffic", n)
		}
	})
	st := c.Stats()
	if allocs != 0 {
		t.Errorf("%v allocations per pass of %d events", allocs, len(records))
	}
	if st.Evicted == 0 || st.Tracked < incident.DefaultMaxCTs-1 {
		t.Errorf("not a steady state: %+v", st)
	}
	t.Logf("%d events a pass; %+v", len(records), st)
}

// With --all, every ordinary event (a confirm per new flow, IPv4 and IPv6,
// DNS and TCP, on two CPUs) goes through decode, correlate and the text or
// JSON event line without an allocation: in steady state, the renderer
// writing out what it holds as it fills.
func TestAllOrdinaryEventsAllocateNothing(t *testing.T) {
	s, err := streamtest.Synthesize(streamtest.OrdinaryAllNode())
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			records := s.CopyRecords()
			var w countingWriter
			out, err := render.New(&w, format, render.Options{})
			if err != nil {
				t.Fatal(err)
			}
			p := New(out, true, time.Unix(0, 0), true)
			pass := func() {
				for _, r := range records {
					if err := p.Record(r); err != nil {
						t.Fatal(err)
					}
				}
				s.Advance(records)
			}
			pass() // fill the correlator and grow the renderer's buffer
			if err := out.Flush(); err != nil {
				t.Fatal(err)
			}
			written := w.lines
			allocs := testing.AllocsPerRun(2, pass)
			if allocs != 0 {
				t.Errorf("%v allocations per pass of %d events", allocs, len(records))
			}
			if st := p.Stats(); st.Incidents != 0 || st.DecodeErrors != 0 {
				t.Errorf("ordinary traffic: %+v", st)
			}
			// AllocsPerRun makes one more pass than it counts: each wrote a
			// line per event, the last ones once flushed.
			if err := out.Flush(); err != nil {
				t.Fatal(err)
			}
			if got, want := w.lines-written, 3*len(records); got != want {
				t.Errorf("%d event lines written in 3 passes, want %d", got, want)
			}
		})
	}
}

// countingWriter counts the lines written to it.
type countingWriter struct{ lines int }

func (w *countingWriter) Write(b []byte) (int, error) {
	w.lines += bytes.Count(b, []byte{'\n'})
	return len(b), nil
}

// With races in the mix, only the events that complete an incident
// allocate (its reason, timelines, names), and a bounded number of times;
// every other event allocates nothing.
func TestOnlyIncidentsAllocate(t *testing.T) {
	opt := streamtest.BusyNode()
	opt.Flows, opt.Live = 4000, 1500
	s, err := streamtest.Synthesize(opt)
	if err != nil {
		t.Fatal(err)
	}
	records := s.CopyRecords()
	c := incident.New(incident.Options{MaxCTs: 2048}) // to reach eviction within a pass
	feedPass(t, s, records, c)
	if c.Stats().Evicted == 0 {
		t.Fatalf("not a steady state: %+v", c.Stats())
	}
	var ev event.Event
	var m0, m1 runtime.MemStats
	incidents, allocs, most := 0, uint64(0), uint64(0)
	// MemStats counts the whole process: another goroutine (the test
	// framework, the runtime) may allocate while an event is processed. An
	// allocation of the correlator's own would hit every event of its kind,
	// so a few strays are tolerated and logged.
	strays := 0
	for i, r := range records {
		runtime.ReadMemStats(&m0)
		if err := event.Decode(r, &ev); err != nil {
			t.Fatal(err)
		}
		n := len(c.Add(&ev))
		runtime.ReadMemStats(&m1)
		a := m1.Mallocs - m0.Mallocs
		if n == 0 && a != 0 {
			strays++
			t.Logf("event %d (%v) completed no incident but %d allocations happened meanwhile", i, ev.Kind, a)
			if strays > len(records)/1000 {
				t.Fatalf("%d of %d events without an incident allocated", strays, len(records))
			}
			continue
		}
		incidents += n
		allocs += a
		if n > 0 {
			most = max(most, a/uint64(n))
		}
	}
	if incidents == 0 {
		t.Fatal("no incidents")
	}
	// Measured: 15 on average, at most 21 with other tests running (the
	// runtime allocates a little at times); not room for twice the work.
	const bound = 30
	if most > bound {
		t.Errorf("an incident cost %d allocations, more than %d", most, bound)
	}
	t.Logf("%d events, %d incidents, %.1f allocations per incident (most %d), %.4f per event",
		len(records), incidents, float64(allocs)/float64(incidents), most, float64(allocs)/float64(len(records)))
}

// floodRecord makes raw records of one kind about cts that nothing ever
// pairs: each call to next gives the next ct pointer, source port and time.
type floodRecord struct {
	raw  []byte
	i    uint64
	kind event.Kind
}

func newFlood(tb testing.TB, kind event.Kind) *floodRecord {
	r := probe.BPFEvent{Kind: uint8(kind), Hook: 3, Ctinfo: 2, Ret: 1, Cpu: 1, Netns: streamtest.HostNetns,
		PidTgid: 77<<32 | 77, Flags: uint16(event.FlagNew)}
	r.Orig = streamtest.Tuple(17, streamtest.DNSService, 1, streamtest.DNSService, 53)
	r.Reply = streamtest.Reply(r.Orig)
	if kind == event.Confirm {
		// A drop without a clash or a winner: a loser that waits out the
		// reorder window, then is reported as an insert that failed without
		// a clash (the clash probe is attached).
		r.Flags, r.Hook, r.Ret = 0, 0xff, event.VerdictDrop
	}
	raw, err := binary.Append(nil, binary.LittleEndian, &r)
	if err != nil {
		tb.Fatal(err)
	}
	return &floodRecord{raw: raw, kind: kind}
}

func (f *floodRecord) next() []byte {
	f.i++
	var r probe.BPFEvent
	le := binary.LittleEndian
	le.PutUint64(f.raw[unsafe.Offsetof(r.Ts):], 1e9+f.i*100)
	le.PutUint64(f.raw[unsafe.Offsetof(r.Ct):], 0xffff888000000000+f.i*0x140)
	le.PutUint64(f.raw[unsafe.Offsetof(r.OtherCt):], 0xffff888000000000+f.i*0x140)
	le.PutUint16(f.raw[unsafe.Offsetof(r.Orig)+unsafe.Offsetof(r.Orig.Sport):], streamtest.Net16(uint16(f.i)))
	return f.raw
}

// A flood of a million new cts that are never confirmed (or of loser
// confirms without a winner) through the Processor: the correlator holds
// at most MaxCTs records and MaxPending waiting incidents, and the heap
// does not grow.
func TestFloodStaysBounded(t *testing.T) {
	for _, tc := range []struct {
		kind event.Kind
		n    int
	}{{event.CTIn, 1_000_000}, {event.Confirm, 100_000}} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			p := New(render.NewText(io.Discard, render.Options{}), false, time.Unix(0, 0), true)
			f := newFlood(t, tc.kind)
			var m runtime.MemStats
			var base uint64
			for i := range tc.n {
				if err := p.Record(f.next()); err != nil {
					t.Fatal(err)
				}
				if i%4096 != 0 {
					continue
				}
				st := p.corr.Stats()
				if st.Tracked > incident.DefaultMaxCTs || st.Pending > incident.DefaultMaxPending {
					t.Fatalf("after %d events: %+v", i+1, st)
				}
				if i == 2*incident.DefaultMaxCTs/4096*4096 {
					runtime.GC()
					runtime.ReadMemStats(&m)
					base = m.HeapAlloc
				}
			}
			runtime.GC()
			runtime.ReadMemStats(&m)
			st := p.corr.Stats()
			t.Logf("%+v; heap %d KiB, %+d KiB since the correlator filled", st, m.HeapAlloc>>10, (int64(m.HeapAlloc)-int64(base))>>10)
			if st.Tracked > incident.DefaultMaxCTs || st.Pending > incident.DefaultMaxPending || st.Events != uint64(tc.n) {
				t.Errorf("stats %+v", st)
			}
			if reported := st.Incidents + st.Findings; st.Evicted+uint64(st.Tracked) < uint64(tc.n)-reported {
				t.Errorf("%d events but only %d evicted + %d tracked + %d reported", tc.n, st.Evicted, st.Tracked, reported)
			}
			if growth := int64(m.HeapAlloc) - int64(base); growth > 1<<20 {
				t.Errorf("heap grew %d KiB during the flood", growth>>10)
			}
			if tc.kind == event.CTIn {
				// And the flood costs nothing per event.
				if a := testing.AllocsPerRun(10_000, func() { p.Record(f.next()) }); a != 0 {
					t.Errorf("%v allocations per flood event", a)
				}
			}
			if _, err := p.Finish(time.Unix(1, 0), nil); err != nil {
				t.Fatal(err)
			}
			if st := p.corr.Stats(); st.Tracked != 0 || st.Pending != 0 {
				t.Errorf("after Finish: %+v", st)
			}
		})
	}
}
