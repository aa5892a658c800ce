package session

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/ctprobe/ctprobe/tracer/capture"
	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/event/eventtest"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/kstat"
	"github.com/ctprobe/ctprobe/tracer/mode"
	"github.com/ctprobe/ctprobe/tracer/plan"
	"github.com/ctprobe/ctprobe/tracer/probe"
	"github.com/ctprobe/ctprobe/tracer/render"
	"github.com/ctprobe/ctprobe/tracer/render/rendertest"
)

// hostileCapture is a capture from a machine where every string ctprobe
// prints was chosen by an attacker: process and host names, the plan, a
// netns and counter name, a loss kind.
func hostileCapture(tb testing.TB) []byte {
	const esc = "\x1b]0;pwned\a\x1b[2J\x9b"
	var buf bytes.Buffer
	counters := []kstat.NetnsCounters{{Netns: 4026532201, Name: esc, Values: map[string]uint64{esc: 1, "insert_failed": 2}}}
	w, err := capture.NewWriter(&buf, capture.Header{RecordLayout: probe.RecordLayout, RecordSize: uint32(event.Size),
		Mode: mode.Default.CaptureName(), StartUnixNano: 1e18, Hostname: esc, Counters: counters,
		Plan: []plan.Entry{{Point: esc, Function: esc, Attach: plan.Attach(esc), Status: plan.Status(esc), Reason: esc}}})
	if err != nil {
		tb.Fatal(err)
	}
	for i := range 2 {
		for _, r := range eventtest.Race3(i, esc) {
			w.WriteRecord(0, r)
		}
	}
	w.WriteLost(-1, 1, esc)
	counters[0].Values = map[string]uint64{esc: 5, "insert_failed": 9}
	if err := w.Close(capture.Trailer{EndUnixNano: 2e18, Counters: counters}); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// smallCorrelator keeps a processor per input cheap (the default tables
// take about 20 MB); its bounds still apply.
var smallCorrelator = incident.Options{MaxCTs: 64, MaxPending: 8}

// FuzzReplay runs the report pipeline (capture reader, correlator,
// renderer) on damaged captures, in both formats: no panic, no hang, no
// control byte in the output, memory bounded by the input, and a capture
// whose records could be decoded is summarised whatever ended it.
func FuzzReplay(f *testing.F) {
	lookups, err := eventtest.Lookups(3, "dig", "node-a")
	if err != nil {
		f.Fatal(err)
	}
	hostile := hostileCapture(f)
	for _, seed := range [][]byte{lookups, hostile, lookups[:len(lookups)/2], hostile[:len(hostile)-50]} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, format := range []string{"text", "json"} {
			rd, err := capture.NewReader(bytes.NewReader(data))
			if err != nil {
				return
			}
			var out bytes.Buffer
			r, _ := render.New(&out, format, render.Options{})
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err = replay(rd, r, ReplayOptions{}, nil, smallCorrelator)
			runtime.ReadMemStats(&after)
			if c := rendertest.FirstControl(out.Bytes()); c != "" {
				t.Fatalf("%s output: %s:\n%s", format, c, out.Bytes())
			}
			if allocated := after.TotalAlloc - before.TotalAlloc; allocated > 8<<20+200*uint64(len(data)) {
				t.Fatalf("%d bytes allocated for a %d-byte capture", allocated, len(data))
			}
			if CheckReplayable(rd) != nil {
				if out.Len() != 0 {
					t.Fatalf("a capture this ctprobe cannot decode printed output")
				}
				continue
			}
			if err != nil && !errors.Is(err, capture.ErrTruncated) && !errors.Is(err, capture.ErrCorrupt) {
				t.Fatalf("unexpected error %v", err)
			}
			if summary := map[string]string{"text": "=== ctprobe summary (final)", "json": `"kind":"summary"`}[format]; !strings.Contains(out.String(), summary) {
				t.Fatalf("%s output has no summary (error %v):\n%s", format, err, out.Bytes())
			}
		}
	})
}

// The seeds themselves: the hostile capture is whole, reports its two
// lookups, and prints each hostile string escaped.
func TestReplayHostileCapture(t *testing.T) {
	rd, err := capture.NewReader(bytes.NewReader(hostileCapture(t)))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	got, err := replay(rd, render.NewText(&out, render.Options{}), ReplayOptions{}, nil, smallCorrelator)
	if err != nil || got.Incidents != 2 {
		t.Fatalf("%d incidents, %v", got.Incidents, err)
	}
	if c := rendertest.FirstControl(out.Bytes()); c != "" {
		t.Fatalf("%s:\n%s", c, out.Bytes())
	}
	if n := strings.Count(out.String(), `\x1b]0;pwned\x07\x1b[2J`); n < 6 {
		t.Errorf("the escaped name is printed %d times:\n%s", n, out.String())
	}
}
