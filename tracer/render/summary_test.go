package render

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/loss"
	"github.com/ctprobe/ctprobe/tracer/summary"
)

func TestTally(t *testing.T) {
	s := testSummary()
	if s.Incidents != 8 {
		t.Errorf("incidents %d", s.Incidents)
	}
	if len(s.ByRace) != 7 || s.ByRace[0].Race != 0 || s.ByRace[6].Race != 5 || s.ByRace[6].Outcome != incident.OutcomePortMoved {
		t.Errorf("by race %+v", s.ByRace)
	}
	if s.ByProcess[0].Comm != "ctlab" || s.ByProcess[0].Count != 6 {
		t.Errorf("by process %+v", s.ByProcess)
	}
	if s.ByDestination[0].Dst.String() != "10.96.0.10:53" || s.ByDestination[0].Count != 4 {
		t.Errorf("by destination %+v", s.ByDestination)
	}
	var ns *summary.NetnsSummary
	for i := range s.Netns {
		if s.Netns[i].Netns == tNetns {
			ns = &s.Netns[i]
		}
	}
	if ns == nil || ns.Resolved != 4 || ns.Dropped != 3 || ns.Name != "ctlab" || ns.Counters["clash_resolve"] != 4 {
		t.Errorf("netns %+v", ns)
	}
	if s.Lost["no-history"] != 1 {
		t.Errorf("lost %v", s.Lost)
	}
	// Reset starts a new interval; counters alone still make a netns row.
	tl := testTally()
	tl.Reset(testNow)
	s = tl.Summary(testNow.Add(10*time.Second), testCounters()[:1], true)
	if s.Incidents != 0 || len(s.ByRace) != 0 || len(s.Netns) != 1 || s.Netns[0].Incidents != 0 || !s.Final {
		t.Errorf("after reset: %+v", s)
	}
	// Losers whose sender is unknown are counted together.
	anon := testIncidents()[0]
	anon.Loser.Task = false
	tl.Add(&anon)
	s = tl.Summary(testNow, nil, false)
	if len(s.ByProcess) != 1 || s.ByProcess[0] != (summary.ProcessCount{Count: 1}) {
		t.Errorf("unknown sender: %+v", s.ByProcess)
	}
	if txt := appendSummaryText(nil, s, &Options{}); !bytes.Contains(txt, []byte("  (sender unknown)  1\n")) {
		t.Errorf("unknown sender in text:\n%s", txt)
	}
	// The summary is a copy: adding more to the tally changes none of it,
	// down to its maps and slices (losses, counters, per-race and per-netns
	// rows).
	tl = testTally()
	s = tl.Summary(testNow, testCounters(), false)
	before, _ := json.Marshal(s)
	for _, inc := range testIncidents() {
		tl.Add(&inc)
	}
	tl.AddLost(loss.Count{Kind: loss.NoHistory, CPU: 1, Count: 5})
	tl.AddLost(loss.Count{Kind: loss.Ringbuf, CPU: 0, Count: 2})
	if after, _ := json.Marshal(s); !bytes.Equal(before, after) {
		t.Errorf("summary shares state with the tally:\nbefore %s\nafter  %s", before, after)
	}
}

// A hand-filled summary may list races in any order: each race gets one
// mitigation row with its totals, in race order, then the drops.
func TestMitigationsOfUnsortedRaces(t *testing.T) {
	s := &summary.Summary{ByRace: []summary.RaceCount{
		{Race: incident.RaceEndpoints, Outcome: incident.OutcomeNATClash, Count: 2},
		{Race: incident.RaceIdentical, Outcome: incident.OutcomeMerged, Count: 1},
		{Race: incident.RaceEndpoints, Outcome: incident.OutcomeDropped, Count: 1},
	}}
	var got []string
	for _, m := range summary.Mitigations(s) {
		race := -1
		if m.Race != nil {
			race = *m.Race
		}
		got = append(got, fmt.Sprintf("%d %s %d/%d", race, m.Outcome, m.Incidents, m.Dropped))
	}
	if want := []string{"1  1/0", "3  3/1", "-1 dropped 1/1"}; !slices.Equal(got, want) {
		t.Errorf("mitigations %q, want %q", got, want)
	}
}

// A netns whose drops no incident explains (a full table drops before any
// clash) gets its reasons even though insert_failed is fully explained.
func TestSummaryUnexplainedDrops(t *testing.T) {
	s := &summary.Summary{Netns: []summary.NetnsSummary{{Netns: 7, Name: "node",
		Counters: map[string]uint64{"clash_resolve": 0, "insert_failed": 0, "drop": 14}, Entries: 20, Max: 20}}}
	txt := string(appendSummaryText(nil, s, &Options{}))
	if !strings.Contains(txt, "insert_failed +0, drop +14\n") || !strings.Contains(txt, "the table was full") {
		t.Errorf("drops of a full table not explained:\n%s", txt)
	}
}
