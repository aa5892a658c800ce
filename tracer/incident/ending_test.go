package incident

import "testing"

// How each race ends, era by era (docs/kernel-notes.md, The race types;
// Kernel eras at a glance).
func TestEndsOn(t *testing.T) {
	udpNAT := Path{Proto: 17, NAT: true}
	cases := []struct {
		kernel string
		race   RaceType
		path   Path
		want   Outcome
	}{
		{"4.18.0", RaceIdentical, udpNAT, OutcomeDropped},
		{"4.18.0", RaceIdentical, Path{Proto: 17}, OutcomeMerged},
		{"4.19.0", RaceIdentical, udpNAT, OutcomeMerged},
		{"4.19.0", RaceNATPort, udpNAT, OutcomeDropped},
		{"5.0.0", RaceNATPort, udpNAT, ""},
		{"5.4.0", RaceNATPort, Path{Proto: 17, NAT: true, PortsMove: true}, OutcomeDropped},
		{"5.6.0", RaceNATPort, Path{Proto: 17, NAT: true, PortsMove: true}, OutcomeNATClash},
		{"5.5.19", RaceEndpoints, udpNAT, OutcomeDropped},
		{"5.6.0", RaceEndpoints, udpNAT, OutcomeNATClash},
		{"6.12.0", RaceSNATPort, udpNAT, OutcomeDropped},
		{"6.11.0", RaceReverse, udpNAT, ""},
		{"6.11.0", RaceReverse, Path{Proto: 17}, OutcomeMerged},
		{"6.12.0", RaceReverse, udpNAT, OutcomeMerged},
		{"6.18.0", RaceIdentical, Path{Proto: 6, NAT: true}, OutcomeDropped},
		{"6.4.0", RaceIdentical, Path{Proto: 47, NAT: true}, OutcomeDropped},
		{"6.5.0", RaceIdentical, Path{Proto: 47, NAT: true}, OutcomeMerged},
		{"6.18.0", RaceIdentical, Path{Proto: 1, NAT: true}, OutcomeDropped},
		{"7.0.0", RaceIdentical, Path{Proto: 1, NAT: true}, OutcomeMerged},
		{"6.18.0", RaceUnknown, udpNAT, ""},
	}
	for _, c := range cases {
		if got := c.race.EndsOn(ParseKernelRelease(c.kernel), c.path); got != c.want {
			t.Errorf("race %d on %s %+v: %q, want %q", c.race, c.kernel, c.path, got, c.want)
		}
	}
	if v := ParseKernelRelease("6.1.0-31-cloud-amd64"); v != (KernelVersion{6, 1, 0}) || !v.AtLeast(6, 1) || v.AtLeast(6, 2) {
		t.Errorf("6.1.0-31-cloud-amd64 read as %v", v)
	}
}
