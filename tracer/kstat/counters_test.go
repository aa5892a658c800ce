package kstat

import (
	"testing"
)

func TestGrowth(t *testing.T) {
	before := []NetnsCounters{
		{Netns: 1, Name: "host", Values: map[string]uint64{"clash_resolve": 10, "insert_failed": 2, "drop": 2}},
		{Netns: 2, Name: "idle", Values: map[string]uint64{"clash_resolve": 5, "insert_failed": 0, "drop": 0}},
		// A per-CPU counter about to wrap at 2^32.
		{Netns: 4, Name: "wrap", Values: map[string]uint64{"clash_resolve": 1<<32 - 3, "insert_failed": 0, "drop": 0}},
	}
	after := []NetnsCounters{
		{Netns: 1, Name: "host", Values: map[string]uint64{"clash_resolve": 14, "insert_failed": 3, "drop": 3}, Entries: 17, Max: 262144},
		{Netns: 2, Name: "idle", Values: map[string]uint64{"clash_resolve": 5, "insert_failed": 0, "drop": 0}},
		// Created after the first snapshot: counts from zero.
		{Netns: 3, Name: "new", Values: map[string]uint64{"clash_resolve": 7, "insert_failed": 1, "drop": 1}},
		{Netns: 4, Name: "wrap", Values: map[string]uint64{"clash_resolve": 1<<32 + 2, "insert_failed": 0, "drop": 0}},
	}
	got := Growth(before, after)
	want := map[uint64]map[string]uint64{
		1: {"clash_resolve": 4, "insert_failed": 1, "drop": 1},
		3: {"clash_resolve": 7, "insert_failed": 1, "drop": 1},
		4: {"clash_resolve": 5, "insert_failed": 0, "drop": 0},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d namespaces, want %d (an unchanged one must be left out): %+v", len(got), len(want), got)
	}
	for _, g := range got {
		// Entries and Max are gauges: the later reading, not a difference.
		if g.Netns == 1 && (g.Entries != 17 || g.Max != 262144) {
			t.Errorf("netns 1 gauges: %+v", g)
		}
		w, ok := want[g.Netns]
		if !ok {
			t.Errorf("unexpected netns %d", g.Netns)
			continue
		}
		for k, v := range w {
			if g.Values[k] != v {
				t.Errorf("netns %d %s: got %d want %d", g.Netns, k, g.Values[k], v)
			}
		}
	}
}
