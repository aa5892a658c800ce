package incident

import "testing"

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
		if row.Type != r || row.Name != n || row.Mitigation == "" {
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
