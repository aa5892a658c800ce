package incident

import (
	"strings"
	"testing"

	"github.com/ctprobe/ctprobe/tracer/event"
)

func TestOutcomeOf(t *testing.T) {
	const l, w = 0x100, 0x200
	cases := []struct {
		verdict     uint32
		after       uint64
		status      uint64
		want        Outcome
		race        bool
		description string
	}{
		{1, l, event.StatusConfirmed, "", false, "normal insert"},
		{0, l, 0, OutcomeDropped, true, "drop"},
		{0, w, 0, OutcomeDropped, true, "drop wins over a changed ct"},
		{1, w, event.StatusConfirmed, OutcomeMerged, true, "merge"},
		{1, w, event.StatusNATClash, OutcomeMerged, true, "merge: the status is W's"},
		{1, l, event.StatusNATClash | event.StatusConfirmed, OutcomeNATClash, true, "reply-only insert"},
		{1, 0, 0, "", false, "no ct after: not a merge"},
	}
	for _, c := range cases {
		o, race := OutcomeOf(c.verdict, l, c.after, c.status)
		if o != c.want || race != c.race {
			t.Errorf("%s: got %q %v, want %q %v", c.description, o, race, c.want, c.race)
		}
	}
}

// ev builds Evidence for a loser/winner pair of UDP tuples (REPLY after NAT).
func ev(outcome Outcome, ol, rl, ow, rw event.Tuple) *Evidence {
	e := &Evidence{HaveConfirm: true, CT: 0x100, OtherCT: 0x100, Verdict: 1, OL: ol, RL: rl,
		W: 0x200, WTuples: true, OW: ow, RW: rw, ClashDir: 0, ClashWinner: 0x200}
	switch outcome {
	case OutcomeDropped:
		e.Verdict = 0
	case OutcomeMerged:
		e.OtherCT = 0x200
	case OutcomeNATClash:
		e.Status = event.StatusNATClash
	}
	return e
}

// normal is the Evidence of a normal insert (no clash at confirm).
func normal(ol, rl event.Tuple) *Evidence {
	e := ev(OutcomeMerged, ol, rl, ol, rl)
	e.OtherCT, e.W, e.WTuples, e.ClashDir, e.ClashWinner = e.CT, 0, false, -1, 0
	return e
}

// portMoved is a normal insert whose SRC binding moved the port because W,
// the reverse flow, held the reply tuple.
func portMoved(ol, rl, ow, rw event.Tuple) *Evidence {
	e := normal(ol, rl)
	e.W, e.WTuples, e.OW, e.RW, e.ReverseHeld = 0x200, true, ow, rw, true
	return e
}

func TestClassifyTable(t *testing.T) {
	o := tuple(udp, podA+":41000", clusterIP)
	r1 := tuple(udp, endpoint1, podA+":41000")
	r2 := tuple(udp, endpoint2, podA+":41000")
	moved := tuple(udp, endpoint1, podA+":41001")
	movedR2 := tuple(udp, endpoint2, podA+":41001")
	otherAddr := tuple(udp, endpoint1, nodeIP+":41000")       // SNAT to another address, same port
	otherPort := tuple(udp, "10.244.2.1:5353", podA+":41000") // DNAT to another port of the same pod
	// R4: two pods, one SNAT port.
	o4a := tuple(udp, podA+":5555", "8.8.8.8:53")
	o4b := tuple(udp, podB+":5555", "8.8.8.8:53")
	r4 := tuple(udp, "8.8.8.8:53", nodeIP+":40000")
	// R5: peers.
	a2b := tuple(udp, "127.0.0.11:5001", "127.0.0.12:5002")
	b2a := tuple(udp, "127.0.0.12:5002", "127.0.0.11:5001")
	unrelated := tuple(udp, "192.0.2.1:1", "192.0.2.2:2")
	moved2 := tuple(udp, endpoint1, podA+":41002")
	tcpA2B := tuple(tcp, "127.0.0.11:5001", "127.0.0.12:5002")
	tcpB2A := tuple(tcp, "127.0.0.12:5002", "127.0.0.11:5001")
	b2aMoved := tuple(udp, "127.0.0.11:5001", "127.0.0.12:6002") // B's reply after its source port moved

	cases := []struct {
		name   string
		e      *Evidence
		race   RaceType
		out    Outcome
		reason string
	}{
		{"R1 merged", ev(OutcomeMerged, o, r1, o, r1), RaceIdentical, OutcomeMerged, "identical tuples"},
		{"R1 merged, both moved alike", ev(OutcomeMerged, o, moved, o, moved), RaceIdentical, OutcomeMerged, "did not cause the clash"},
		{"R5 merged", ev(OutcomeMerged, b2a, a2b, a2b, b2a), RaceReverse, OutcomeMerged, "reverse collision"},
		{"merged, L moved (pre-6.12 no-NAT merge)", ev(OutcomeMerged, o, moved, o, r1), RaceNATPort, OutcomeMerged, "41000→41001"},
		{"merged, endpoints differ (pre-6.12 no-NAT merge)", ev(OutcomeMerged, o, r2, o, r1), RaceEndpoints, OutcomeMerged, "winner without NAT"},
		{"merged, unrelated", ev(OutcomeMerged, o, r1, unrelated, unrelated), RaceUnknown, OutcomeMerged, "unrelated"},
		{"R3 nat-clash", ev(OutcomeNATClash, o, r2, o, r1), RaceEndpoints, OutcomeNATClash, "different DNAT endpoints"},
		{"R3 nat-clash, L also moved", ev(OutcomeNATClash, o, movedR2, o, r1), RaceEndpoints, OutcomeNATClash, "also moved"},
		{"R2 nat-clash: same endpoint, other port", ev(OutcomeNATClash, o, moved, o, r1), RaceNATPort, OutcomeNATClash, "41000→41001"},
		{"R2 nat-clash: same endpoint, other address", ev(OutcomeNATClash, o, otherAddr, o, r1), RaceNATPort, OutcomeNATClash, "source 10.0.0.1:41000"},
		{"nat-clash with identical tuples", ev(OutcomeNATClash, o, r1, o, r1), RaceUnknown, OutcomeNATClash, "should have merged"},
		{"R1 dropped (udp)", ev(OutcomeDropped, o, r1, o, r1), RaceIdentical, OutcomeDropped, "4.19+"},
		{"R2 dropped", ev(OutcomeDropped, o, moved, o, r1), RaceNATPort, OutcomeDropped, "winner holds 41000"},
		{"R2 dropped, endpoints differ too", ev(OutcomeDropped, o, movedR2, o, r1), RaceNATPort, OutcomeDropped, "endpoints differ too"},
		{"R3 dropped", ev(OutcomeDropped, o, r2, o, r1), RaceEndpoints, OutcomeDropped, "5.6+"},
		{"R3 dropped: same endpoint address, other port", ev(OutcomeDropped, o, otherPort, o, r1), RaceEndpoints, OutcomeDropped, "10.244.2.1:5353"},
		{"dropped: NAT gave another address", ev(OutcomeDropped, o, otherAddr, o, r1), RaceNATPort, OutcomeDropped, "source 10.0.0.1:41000"},
		{"R5 dropped", ev(OutcomeDropped, b2a, a2b, a2b, b2a), RaceReverse, OutcomeDropped, "6.12"},
		{"R4 dropped", ev(OutcomeDropped, o4b, r4, o4a, r4), RaceSNATPort, OutcomeDropped, "SNAT port collision"},
		{"dropped, unrelated", ev(OutcomeDropped, o, r1, unrelated, unrelated), RaceUnknown, OutcomeDropped, "share nothing"},
		{"R2 nat-clash: ports apart (random-fully)", ev(OutcomeNATClash, o, moved, o, moved2), RaceNATPort, OutcomeNATClash, "randomises ports (as MASQUERADE --random-fully does)"},
		{"R2 dropped: ports apart", ev(OutcomeDropped, o, moved, o, moved2), RaceNATPort, OutcomeDropped, "reply-only insertion needs 5.6+"},
		{"R2 dropped: no same-origin rule", ev(OutcomeDropped, o, moved, o, r1), RaceNATPort, OutcomeDropped, "no same-origin rule (4e35c1cb9460, 5.0) to keep the port or a rule that randomises ports"},
		{"R2 nat-clash: loser moved, winner kept the port", ev(OutcomeNATClash, o, moved, o, r1), RaceNATPort, OutcomeNATClash, "so the rule randomises ports"},
		{"R5 dropped (tcp)", ev(OutcomeDropped, tcpB2A, tcpA2B, tcpA2B, tcpB2A), RaceReverse, OutcomeDropped, "tcp conntrack has no clash resolution"},
		{"R5 port moved", portMoved(b2a, b2aMoved, a2b, b2a), RaceReverse, OutcomePortMoved, "moved the loser's source port 5002→6002"},
		// 5.6 to 6.11 (seen on Debian's 5.10): the binding moved the port,
		// then the ORIGINAL clashed at confirm and the free REPLY was
		// inserted alone.
		{"R5 nat-clash, port moved", ev(OutcomeNATClash, b2a, b2aMoved, a2b, b2a), RaceReverse, OutcomeNATClash, "moved its source port 5002→6002, so its REPLY was free"},
		{"normal insert, moved, no reverse entry", normal(b2a, b2aMoved), RaceUnknown, OutcomeUnknown, "normal insert"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := Classify(c.e)
			if res.Race != c.race || res.Outcome != c.out {
				t.Errorf("got race %d %s, want %d %s (%s)", res.Race, res.Outcome, c.race, c.out, res.Reason)
			}
			if !strings.Contains(res.Reason, c.reason) {
				t.Errorf("reason %q lacks %q", res.Reason, c.reason)
			}
			// A race 2 settled on 5.6+ is never advised the same-origin
			// rule: that kernel has it.
			if res.Race == RaceNATPort && res.Outcome.Settled() && strings.Contains(res.Mitigation, "4e35c1cb9460") {
				t.Errorf("settled race 2 advised the same-origin rule: %q", res.Mitigation)
			}
		})
	}
}

func TestClassifyMissing(t *testing.T) {
	o := tuple(udp, podA+":41000", clusterIP)
	r1 := tuple(udp, endpoint1, podA+":41000")

	e := ev(OutcomeDropped, o, r1, o, r1)
	e.W, e.WTuples, e.ClashDir = 0, false, -1
	if res := Classify(e); res.Race != RaceUnknown || res.Outcome != OutcomeDropped || !strings.Contains(res.Reason, "winner unknown") {
		t.Errorf("no winner: %+v", res)
	}
	e = ev(OutcomeNATClash, o, r1, o, r1)
	e.W, e.WTuples = 0, false
	if res := Classify(e); res.Race != RaceUnknown || !strings.Contains(res.Reason, "race 2 or 3") {
		t.Errorf("nat-clash without winner: %+v", res)
	}
	e = ev(OutcomeMerged, o, r1, o, r1)
	e.WTuples = false
	if res := Classify(e); res.Race != RaceUnknown || !strings.Contains(res.Reason, "0x200") {
		t.Errorf("winner without tuples: %+v", res)
	}
	e = ev(OutcomeDropped, o, r1, o, r1)
	e.RL = event.Tuple{}
	if res := Classify(e); res.Race != RaceUnknown || !strings.Contains(res.Reason, "reply tuple is unknown") {
		t.Errorf("loser without reply: %+v", res)
	}
	// R4 pairing whose clash event named the ORIGINAL node: still R4, but
	// the contradiction is reported.
	o4a := tuple(udp, podA+":5555", "8.8.8.8:53")
	o4b := tuple(udp, podB+":5555", "8.8.8.8:53")
	r4 := tuple(udp, "8.8.8.8:53", nodeIP+":40000")
	e = ev(OutcomeDropped, o4b, r4, o4a, r4)
	if res := Classify(e); res.Race != RaceSNATPort || !strings.Contains(res.Reason, "ORIGINAL node") {
		t.Errorf("R4 with dir 0: %+v", res)
	}
	// A merge into another ct than the clash event named.
	e = ev(OutcomeMerged, o, r1, o, r1)
	e.ClashWinner = 0x300
	if res := Classify(e); res.Race != RaceIdentical || !strings.Contains(res.Reason, "merge went to 0x200") {
		t.Errorf("merge target differs: %+v", res)
	}
}

// The R2 ordering: W confirmed before L's SRC binding. Defused (port kept)
// on 5.0+, a port move on older kernels.
func TestClassifyR2Ordering(t *testing.T) {
	o := tuple(udp, podA+":41000", clusterIP)
	r1 := tuple(udp, endpoint1, podA+":41000")
	moved := tuple(udp, endpoint1, podA+":41001")
	e := ev(OutcomeMerged, o, r1, o, r1)
	e.WConfirmed = 1000
	e.LSrcNAT = NATStep{Seen: true, Time: 3500, Before: r1, After: r1}
	res := Classify(e)
	if res.Race != RaceIdentical || !strings.Contains(res.Reason, "race 2 ordering defused") || !strings.Contains(res.Reason, "2.5µs") {
		t.Errorf("defused: %+v", res)
	}
	// Same ordering but L's binding came first: no note.
	e.LSrcNAT.Time = 900
	if res := Classify(e); strings.Contains(res.Reason, "race 2") {
		t.Errorf("R1 ordering named race 2: %+v", res)
	}
	e = ev(OutcomeDropped, o, moved, o, r1)
	e.WConfirmed = 1000
	e.LSrcNAT = NATStep{Seen: true, Time: 1100, Before: r1, After: moved, Range: event.NATRange{Flags: event.RangeProtoRandomFull}}
	res = Classify(e)
	if res.Race != RaceNATPort || !strings.Contains(res.Reason, "before the loser's SRC binding") || !strings.Contains(res.Reason, "randomises ports (--random-fully") || !strings.Contains(res.Reason, "reply-only insertion needs 5.6+") || !strings.Contains(res.Mitigation, "drop --random-fully") {
		t.Errorf("R2: %+v", res)
	}
}

// ICMP keeps the echo id in src.u of both tuples.
func TestClassifyICMP(t *testing.T) {
	echo := func(src, dst string, id uint16, typ uint16) event.Tuple {
		return event.Tuple{Src: addr(src), Dst: addr(dst), SrcPort: id, DstPort: typ << 8, Proto: 1}
	}
	o := echo("10.244.1.2", "10.96.0.20", 77, 8)
	if got, want := invert(o), echo("10.96.0.20", "10.244.1.2", 77, 0); got != want {
		t.Fatalf("invert %v, want %v", got, want)
	}
	rl := echo("10.244.2.2", "10.244.1.2", 77, 0)
	rw := echo("10.244.2.1", "10.244.1.2", 77, 0)
	res := Classify(ev(OutcomeDropped, o, rl, o, rw))
	if res.Race != RaceEndpoints || !strings.Contains(res.Reason, "icmp conntrack does not resolve clashes") {
		t.Errorf("icmp R3: %+v", res)
	}
	moved := echo("10.244.2.1", "10.244.1.2", 78, 0)
	if res := Classify(ev(OutcomeDropped, o, moved, o, rw)); res.Race != RaceNATPort || !strings.Contains(res.Reason, "77→78") {
		t.Errorf("icmp id moved: %+v", res)
	}
}
