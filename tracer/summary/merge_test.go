package summary

import (
	"testing"
	"time"

	"github.com/ctprobe/ctprobe/tracer/incident"
)

// A summary of several nodes adds up each node's mitigations by race and
// text (the texts the live correlator chose, not ones derived again from
// the races) and keeps each node's findings with their node.
func TestMergeMitigationsAndFindings(t *testing.T) {
	node := func() *Summary {
		tally := NewTally(time.Unix(0, 0))
		for _, o := range []incident.Outcome{incident.OutcomePortMoved, incident.OutcomeMerged} {
			inc := incident.Incident{Race: incident.RaceReverse, Outcome: o, Mitigation: "advice for " + string(o),
				Loser: incident.Packet{Netns: 4026532201}}
			tally.Add(&inc)
		}
		f := incident.Finding{ID: incident.FindingChainTooLong, Flow: incident.Packet{Netns: 4026532201}}
		tally.AddFinding(&f)
		return tally.Summary(time.Unix(10, 0), nil, true)
	}
	s := Merge([]NodeSummary{{Node: "node-a", Summary: node()}, {Node: "node-b", Summary: node()}})
	if len(s.ByMitigation) != 2 {
		t.Fatalf("mitigations %+v, want one row per text", s.ByMitigation)
	}
	for _, m := range s.ByMitigation {
		moved := uint64(0)
		if m.Text == "advice for port-moved" {
			moved = 2
		}
		if m.Count != 2 || m.Moved != moved {
			t.Errorf("mitigation %+v: want 2 incidents, %d moved", m, moved)
		}
	}
	if len(s.Findings) != 2 || s.Findings[0].Node != "node-a" || s.Findings[1].Node != "node-b" || s.Findings[0].Count != 1 {
		t.Errorf("findings %+v, want one per node", s.Findings)
	}
	if s.Netns[0].ChainTooLong != 1 || s.Netns[0].InsertFailures != 1 {
		t.Errorf("netns row %+v lost the node's insert failures", s.Netns[0])
	}
}
