package summary

import (
	"strings"
	"testing"
)

// What the incidents and findings leave of a netns's counters, and which
// kernel reasons the other counters point to.
func TestUnexplained(t *testing.T) {
	cases := []struct {
		name         string
		n            NetnsSummary
		insert, drop uint64
		reasons      []string
	}{
		{"all explained (5.10+)", NetnsSummary{Counters: map[string]uint64{"clash_resolve": 3, "insert_failed": 2, "drop": 2}, Resolved: 3, Dropped: 2}, 0, 0, nil},
		{"all explained (before 5.10)", NetnsSummary{Counters: map[string]uint64{"insert_failed": 5, "drop": 2}, Resolved: 3, Dropped: 2}, 0, 0, nil},
		{"chains too long, named by findings", NetnsSummary{Counters: map[string]uint64{"clash_resolve": 0, "insert_failed": 4, "drop": 0, "chain_too_long": 4}, InsertFailures: 4, ChainTooLong: 4}, 0, 0, nil},
		{"chains too long, counters only", NetnsSummary{Counters: map[string]uint64{"clash_resolve": 0, "insert_failed": 5, "drop": 0, "chain_too_long": 4}}, 5, 0,
			[]string{"hash chains too long explain 4 (chain_too_long +4)", "no counter explains 1"}},
		{"table full", NetnsSummary{Counters: map[string]uint64{"clash_resolve": 0, "insert_failed": 0, "drop": 7}, Entries: 20, Max: 20}, 0, 7,
			[]string{"the table was full", "20 entries of nf_conntrack_max 20"}},
		{"table full by early_drop", NetnsSummary{Counters: map[string]uint64{"clash_resolve": 0, "insert_failed": 0, "drop": 7, "early_drop": 3}, Entries: 5, Max: 20}, 0, 7,
			[]string{"the table was full", "early_drop +3"}},
		{"tracker", NetnsSummary{Counters: map[string]uint64{"clash_resolve": 0, "insert_failed": 0, "drop": 1, "invalid": 4}, Entries: 5, Max: 1000}, 0, 1,
			[]string{"a full table is unlikely", "invalid +4"}},
		{"not read", NetnsSummary{Incidents: 2, Dropped: 2}, 0, 0, nil},
	}
	for _, c := range cases {
		u := c.n.Unexplained()
		if u.InsertFailed != c.insert || u.Drop != c.drop || len(u.Reasons) == 0 != (len(c.reasons) == 0) {
			t.Errorf("%s: %+v", c.name, u)
		}
		all := strings.Join(u.Reasons, "\n")
		for _, r := range c.reasons {
			if !strings.Contains(all, r) {
				t.Errorf("%s: reasons lack %q:\n%s", c.name, r, all)
			}
		}
	}
}
