package mode

import "testing"

// Each mode runs one BPF pipeline, and its capture name reads back as it.
func TestModes(t *testing.T) {
	for _, c := range []struct {
		all, timeline bool
		m             Mode
		name          string
	}{
		{false, false, Default, "incidents"},
		{true, false, All, "all"},
		{false, true, Timeline, "timeline"},
		{true, true, AllTimeline, "all+timeline"},
	} {
		m := Of(c.all, c.timeline)
		if m != c.m || m.CaptureName() != c.name {
			t.Errorf("Of(%v, %v) = %v (%q)", c.all, c.timeline, m, m.CaptureName())
		}
		if back, ok := FromCapture(c.name); !ok || back != m {
			t.Errorf("FromCapture(%q) = %v, %v", c.name, back, ok)
		}
		// Exactly one BPF pipeline: the clash path with or without confirm
		// streaming, the kept history, or the full stream.
		pipelines := 0
		for _, on := range []bool{m.ClashPathOnly(), m.KeepHistory(), m.StreamAll()} {
			if on {
				pipelines++
			}
		}
		if pipelines != 1 || m.StreamConfirms() && !m.ClashPathOnly() || m.FollowsFlows() == m.ClashPathOnly() {
			t.Errorf("%v: pipelines %d, stream confirms %v, follows flows %v", m, pipelines, m.StreamConfirms(), m.FollowsFlows())
		}
		if m.PrintsEvents() != c.all {
			t.Errorf("%v prints events %v", m, m.PrintsEvents())
		}
	}
	if _, ok := FromCapture("bogus"); ok {
		t.Error("a bogus capture mode was accepted")
	}
}
