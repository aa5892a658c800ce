package incident

import (
	"strings"
	"testing"
)

// The race table has one row per race type, at its index, each with a
// name and a mitigation; an unknown number is named, not dropped.
func TestRaceTable(t *testing.T) {
	want := map[RaceType]string{
		0: "unclassified", 1: "identical tuples", 2: "NAT moved the source port", 3: "DNAT chose different endpoints",
		4: "SNAT port collision (reply tuple taken)", 5: "reverse collision",
	}
	if len(Races) != len(want) {
		t.Errorf("%d rows, want %d", len(Races), len(want))
	}
	for r, n := range want {
		row := r.Race()
		if row.Type != r || row.Name != n || row.Mitigation(Facts{}) == "" {
			t.Errorf("race %d: %+v", r, row)
		}
		if r != RaceUnknown && row.Settled == "" {
			t.Errorf("race %d says nothing of how the kernel settles it", r)
		}
	}
	if n := RaceType(9).Name(); n != "race 9" {
		t.Errorf("race 9 named %q", n)
	}
}

// The advice depends on the evidence: the protocol, what NAT did to the
// port and how the clash ended.
func TestMitigationFacts(t *testing.T) {
	cases := []struct {
		race RaceType
		f    Facts
		want string
	}{
		{RaceNATPort, Facts{Outcome: OutcomeDropped, Proto: 17}, "same-origin entries"},
		{RaceNATPort, Facts{Outcome: OutcomeNATClash, Proto: 17, RandomPorts: true}, "nothing was lost"},
		{RaceNATPort, Facts{Outcome: OutcomeDropped, Proto: 17, RandomPorts: true}, "drop --random-fully from the rule"},
		{RaceNATPort, Facts{Outcome: OutcomeDropped, Proto: 6}, "tcp conntrack has no clash resolution"},
		{RaceSNATPort, Facts{Outcome: OutcomeDropped, Proto: 17}, "also gives the packets of one socket that race different ports"},
		{RaceReverse, Facts{Outcome: OutcomeDropped, Proto: 17}, "kernel ≥ 6.12 merges reverse collisions"},
		{RaceReverse, Facts{Outcome: OutcomeDropped, Proto: 6}, "dropped on every kernel"},
		{RaceReverse, Facts{Outcome: OutcomePortMoved, Proto: 17}, "NOTRACK"},
		{RaceReverse, Facts{Outcome: OutcomePortMoved, Proto: 6}, "for tcp, like every protocol without clash resolution, NAT moves the port"},
		{RaceEndpoints, Facts{Outcome: OutcomeDropped, Proto: 17}, "single-request"},
		{RaceIdentical, Facts{Outcome: OutcomeDropped, Proto: 1}, "icmp conntrack has no clash resolution"},
	}
	for _, c := range cases {
		if got := c.race.Mitigation(c.f); !strings.Contains(got, c.want) {
			t.Errorf("race %d %+v: %q lacks %q", c.race, c.f, got, c.want)
		}
	}
	if got := RaceEndpoints.Mitigation(Facts{Proto: 17}); strings.Contains(got, "from different sockets") {
		t.Errorf("race 3 still says single-request-reopen sends from different sockets: %q", got)
	}
}
