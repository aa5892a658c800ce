package stream

import (
	"testing"
	"time"

	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/event/eventtest"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/probe"
)

// Idle says when it did more than move the correlator's clock: a capture
// keeps those idles in their place, and the others only before the next
// record (session).
func TestIdleActed(t *testing.T) {
	var c collect
	p := New(&c, false, time.Unix(0, 0), true)
	idle := func(now uint64, want bool, what string) {
		t.Helper()
		acted, err := p.Idle(now)
		if err != nil {
			t.Fatal(err)
		}
		if acted != want {
			t.Errorf("idle at %d ns (%s): acted %v, want %v", now, what, acted, want)
		}
	}
	record := func(ts uint64, verdict uint32) {
		t.Helper()
		e := probe.BPFEvent{Ts: ts, Kind: uint8(event.Confirm), Ct: 0xffff888004a1b200 + ts, Netns: 4026532201, Hook: event.HookNone,
			Orig: eventtest.Tuple("10.244.1.2", 41000, "10.96.0.10", 53), Reply: eventtest.Tuple("10.244.2.1", 53, "10.244.1.2", 41000),
			Ret: verdict, Status: event.StatusConfirmed}
		if err := p.Record(eventtest.Record(e)); err != nil {
			t.Fatal(err)
		}
	}
	window := uint64(incident.DefaultReorderWindow)
	idle(uint64(time.Second), false, "nothing held")
	const drop = 2 * uint64(time.Second)
	record(drop, event.VerdictDrop) // an insert that failed: its finding waits
	idle(drop+window-1, false, "the finding still waits")
	idle(drop+window, true, "the finding completed")
	if len(c.findings) != 1 {
		t.Fatalf("%d findings, want 1", len(c.findings))
	}
	const insert = 3 * uint64(time.Second)
	record(insert, event.VerdictAccept) // an ordinary insert: kept MaxAge
	idle(insert+uint64(incident.DefaultMaxAge), false, "the insert is kept")
	idle(insert+uint64(incident.DefaultMaxAge)+1, true, "the insert aged out")
	idle(insert+2*uint64(incident.DefaultMaxAge), false, "nothing held")
}
