package doctor

import (
	"testing"

	"github.com/ctprobe/ctprobe/tracer/incident"
)

// A parallel resolver behind NAT on 5.4 (4.19+ merges race 1; race 2 is
// dropped before 5.6): race 2 is predicted only where another entry holds
// the port, and that condition must not make the finding say drops.
func TestResolverFindingConditionalRace(t *testing.T) {
	n := &node{conntrack: true, nat: true}
	r := Resolver{PID: 1, Comm: "app", Processes: 1, Libc: LibcGlibc, ResolvConf: &ResolvConf{Nameservers: []string{"192.0.2.53"}}, Parallel: true}
	for _, tc := range []struct {
		release string
		race2   incident.Outcome
	}{{"5.4.0", incident.OutcomeDropped}, {"6.12.0", incident.OutcomeNATClash}} {
		f := n.resolverFinding(r, incident.ParseKernelRelease(tc.release))
		if f.Severity != SeveritySettled {
			t.Errorf("%s: severity %s, want settled: %+v", tc.release, f.Severity, f)
		}
		var got []Prediction
		for _, p := range f.Races {
			if p.Race == incident.RaceNATPort {
				got = append(got, p)
			}
		}
		if len(got) != 1 || got[0].Outcome != tc.race2 || got[0].When == "" {
			t.Errorf("%s: race 2 predictions %+v, want one ending %s with a condition", tc.release, got, tc.race2)
		}
	}
	// Without NAT no port moves: no race 2.
	plain := &node{conntrack: true}
	for _, p := range plain.resolverFinding(r, incident.ParseKernelRelease("6.12.0")).Races {
		if p.Race == incident.RaceNATPort {
			t.Errorf("race 2 predicted without NAT: %+v", p)
		}
	}
}
