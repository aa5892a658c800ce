package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ctprobe/ctprobe/tracer/capture"
	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/event/eventtest"
	"github.com/ctprobe/ctprobe/tracer/mode"
	"github.com/ctprobe/ctprobe/tracer/probe"
)

// timedCapture is a trace of three race-3 lookups whose samples were
// received at known times, as a live trace writes them: a loss noted after
// the first lookup and an undecodable record after the second.
type timedCapture struct {
	data                       []byte
	start, end                 time.Time
	lostAt, badAt, lastSampled time.Time
}

func newTimedCapture(t *testing.T) timedCapture {
	t.Helper()
	boot := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	c := timedCapture{start: boot.Add(5 * time.Second), end: boot.Add(20 * time.Second)}
	var buf bytes.Buffer
	w, err := capture.NewWriter(&buf, capture.Header{RecordLayout: probe.RecordLayout, RecordSize: uint32(event.Size),
		Mode: mode.Default.CaptureName(), BootTimeUnixNano: boot.UnixNano(), StartUnixNano: c.start.UnixNano(), Hostname: "node-a"})
	if err != nil {
		t.Fatal(err)
	}
	ktime := uint64(5 * time.Second)
	for i := range 3 {
		for _, r := range eventtest.Race3(i, "dig") {
			ktime += uint64(time.Second) + 1234
			if err := w.WriteRecord(ktime, r); err != nil {
				t.Fatal(err)
			}
			c.lastSampled = boot.Add(time.Duration(ktime))
		}
		switch i {
		case 0:
			c.lostAt = c.lastSampled
			err = w.WriteLost(1, 3, "ringbuf")
		case 1:
			ktime += uint64(time.Second)
			c.badAt = boot.Add(time.Duration(ktime))
			err = w.WriteRecord(ktime, eventtest.Record(probe.BPFEvent{Kind: 0xee})) // no such kind
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(capture.Trailer{EndUnixNano: c.end.UnixNano()}); err != nil {
		t.Fatal(err)
	}
	c.data = buf.Bytes()
	return c
}

// linesByKind decodes a JSON report, the last line of each kind.
func linesByKind(t *testing.T, stdout string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, l := range strings.Split(strings.TrimSuffix(stdout, "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		out[m["kind"].(string)] = m
	}
	return out
}

func wantTimeAt(t *testing.T, what string, m map[string]any, key string, want time.Time) {
	t.Helper()
	got, err := time.Parse(time.RFC3339Nano, m[key].(string))
	if err != nil || !got.Equal(want) {
		t.Errorf("%s %s %v, want %v (%v)", what, key, m[key], want.Format(time.RFC3339Nano), err)
	}
}

// A report's plan, lost and warning lines carry the time in the capture
// when they happened (its start; the receipt of the samples before them),
// not the time of the report; the summary covers the capture's time, up to
// its last sample when it was cut short.
func TestReportCaptureTimes(t *testing.T) {
	inUTC(t)
	c := newTimedCapture(t)
	code, stdout, stderr := reportBytes(t, c.data, "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	l := linesByKind(t, stdout)
	wantTimeAt(t, "plan", l["plan"], "time", c.start)
	wantTimeAt(t, "lost", l["lost"], "time", c.lostAt)
	wantTimeAt(t, "warning", l["warning"], "time", c.badAt)
	wantTimeAt(t, "summary", l["summary"], "start", c.start)
	wantTimeAt(t, "summary", l["summary"], "end", c.end)

	_, text, _ := reportBytes(t, c.data, "--no-color")
	for _, want := range []string{c.lostAt.Format("15:04:05.000000") + " lost 3 records", c.badAt.Format("15:04:05.000000") + " warning: 1 undecodable"} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in\n%s", want, text)
		}
	}

	// Cut into the trailer: the summary ends with the last sample.
	code, stdout, stderr = reportBytes(t, c.data[:len(c.data)-40], "-o", "json")
	if code != exitTruncated {
		t.Fatalf("exit %d, want %d: %s", code, exitTruncated, stderr)
	}
	sum := linesByKind(t, stdout)["summary"]
	wantTimeAt(t, "truncated summary", sum, "start", c.start)
	wantTimeAt(t, "truncated summary", sum, "end", c.lastSampled)
	if d := c.lastSampled.Sub(c.start).Seconds(); sum["duration_s"] != d {
		t.Errorf("truncated summary duration_s %v, want %v", sum["duration_s"], d)
	}
}
