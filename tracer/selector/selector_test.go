package selector

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ctprobe/ctprobe/tracer"
	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/kstat"
)

func TestParseTime(t *testing.T) {
	loc := time.FixedZone("UTC+1", 3600)
	start := time.Date(2026, 12, 2, 23, 30, 0, 0, loc) // a capture started late in the evening
	for _, c := range []struct{ in, want string }{
		{"2026-12-02T22:40:01.5Z", "2026-12-02T23:40:01.5+01:00"},
		{"2026-12-03T00:10:00+01:00", "2026-12-03T00:10:00+01:00"},
		{"2026-12-02 23:45:00", "2026-12-02T23:45:00+01:00"},
		{"2026-12-02T23:45:00.25", "2026-12-02T23:45:00.25+01:00"},
		{"23:45:00.000001", "2026-12-02T23:45:00.000001+01:00"},
		{"00:15:00", "2026-12-03T00:15:00+01:00"}, // after midnight: the next day, the first after the start
		{"+90s", "2026-12-02T23:31:30+01:00"},
	} {
		got, err := ParseTime(c.in, start, loc)
		want, _ := time.Parse(time.RFC3339Nano, c.want)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", c.in, got, err, want)
		}
	}
	for _, bad := range []string{"", "yesterday", "25:00:00", "+", "+-5s", "2026-13-01 00:00:00", "12:00"} {
		if _, err := ParseTime(bad, start, loc); err == nil || !strings.HasPrefix(err.Error(), "time ") {
			t.Errorf("ParseTime(%q): error %v, want one naming the time", bad, err)
		}
	}
}

func TestParseRacesOutcomes(t *testing.T) {
	if rs, err := ParseRaces("1, 4,0"); err != nil || len(rs) != 3 || rs[0] != incident.RaceIdentical || rs[1] != incident.RaceSNATPort || rs[2] != incident.RaceUnknown {
		t.Errorf("ParseRaces: %v, %v", rs, err)
	}
	for _, bad := range []string{"", "6", "-1", "two", "1,,2"} {
		if _, err := ParseRaces(bad); err == nil || !strings.Contains(err.Error(), "want race numbers 0-5") {
			t.Errorf("ParseRaces(%q): %v", bad, err)
		}
	}
	if os, err := ParseOutcomes("dropped,port-moved"); err != nil || len(os) != 2 || os[0] != incident.OutcomeDropped || os[1] != incident.OutcomePortMoved {
		t.Errorf("ParseOutcomes: %v, %v", os, err)
	}
	// The JSON schema's spelling only (one spelling per value).
	for _, bad := range []string{"nat_clash", "drop", "Dropped", ""} {
		if _, err := ParseOutcomes(bad); err == nil || !strings.Contains(err.Error(), "want merged, nat-clash, dropped, port-moved, unknown") {
			t.Errorf("ParseOutcomes(%q): %v", bad, err)
		}
	}
}

func tuple(src string, sport uint16, dst string, dport uint16) event.Tuple {
	return event.Tuple{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), SrcPort: sport, DstPort: dport, Proto: 17}
}

// A finding and the incidents around it, and what each selection keeps.
func TestSelect(t *testing.T) {
	const boot = int64(1e18)
	flow := incident.Packet{
		Netns: 7, PID: 42, Task: true,
		Orig:     tuple("10.244.1.2", 40000, "10.96.0.10", 53),
		Reply:    tuple("10.244.2.5", 53, "10.0.0.1", 61000),
		ReplyPre: tuple("10.96.0.10", 53, "10.244.1.2", 40000),
	}
	flow.Names.Pod.Namespace, flow.Names.Pod.Name, flow.Names.Pod.UID = "kube-system", "client", "6f1c2d3e"
	other := flow
	other.Task = false // the same pid, but not the sender
	other.Names.Pod.Name, other.Names.Pod.UID = "other", "0a9b8c7d"
	inc := incident.Incident{Time: 5e9, Race: incident.RaceReverse, Outcome: incident.OutcomePortMoved, Loser: other, Winner: flow, HasWinner: true}
	alone := inc
	alone.HasWinner = false
	fnd := incident.Finding{Time: 6e9, Flow: flow}
	ev := event.Event{Kind: event.CTIn, Time: 5e9, Netns: 7, PID: 42, Hook: event.HookLocalOut, Orig: flow.Orig, Reply: flow.ReplyPre}
	evSoftirq := ev
	evSoftirq.Hook = event.HookPreRouting // the task fields are whatever the softirq interrupted
	at := func(ns int64) time.Time { return time.Unix(0, boot+ns) }
	host := func(s string) tracer.Filter { return tracer.Filter{Host: netip.MustParseAddr(s)} }
	for _, c := range []struct {
		name string
		sel  *Selector
		// want: inc, alone, fnd, ev, evSoftirq selected
		want [5]bool
	}{
		{"nil", nil, [5]bool{true, true, true, true, true}},
		{"empty", &Selector{}, [5]bool{true, true, true, true, true}},
		{"race 5", &Selector{Races: []incident.RaceType{incident.RaceReverse}}, [5]bool{true, true, false, false, false}},
		{"race 4", &Selector{Races: []incident.RaceType{incident.RaceSNATPort}}, [5]bool{}},
		{"port-moved", &Selector{Outcomes: []incident.Outcome{incident.OutcomePortMoved}}, [5]bool{true, true, false, false, false}},
		{"dropped", &Selector{Outcomes: []incident.Outcome{incident.OutcomeDropped}}, [5]bool{}},
		{"pid: the winner sent it, the loser did not", &Selector{Flow: tracer.Filter{PID: 42}}, [5]bool{true, false, true, true, false}},
		{"pod by namespace/name", &Selector{Pod: "kube-system/client"}, [5]bool{true, false, true, false, false}},
		{"pod by name", &Selector{Pod: "other"}, [5]bool{true, true, false, false, false}},
		{"pod by UID", &Selector{Pod: "6f1c2d3e"}, [5]bool{true, false, true, false, false}},
		{"pod in another namespace", &Selector{Pod: "default/client"}, [5]bool{}},
		{"endpoint after DNAT", &Selector{Flow: host("10.244.2.5")}, [5]bool{true, true, true, false, false}},
		{"ClusterIP before DNAT", &Selector{Flow: host("10.96.0.10")}, [5]bool{true, true, true, true, true}},
		{"port NAT gave", &Selector{Flow: tracer.Filter{Port: 61000}}, [5]bool{true, true, true, false, false}},
		{"proto tcp", &Selector{Flow: tracer.Filter{Proto: 6}}, [5]bool{}},
		{"netns", &Selector{Flow: tracer.Filter{Netns: 8}}, [5]bool{}},
		{"since between", &Selector{Since: at(5.5e9)}, [5]bool{false, false, true, false, false}},
		{"until between", &Selector{Until: at(5.5e9)}, [5]bool{true, true, false, true, true}},
		{"window at the incident, both ends included", &Selector{Since: at(5e9), Until: at(5e9)}, [5]bool{true, true, false, true, true}},
		{"until before boot", &Selector{Until: at(-1e9)}, [5]bool{}},
	} {
		s := c.sel.ForBoot(boot)
		got := [5]bool{s.Incident(&inc), s.Incident(&alone), s.Finding(&fnd), s.Event(&ev), s.Event(&evSoftirq)}
		if got != c.want {
			t.Errorf("%s: selected %v, want %v", c.name, got, c.want)
		}
	}
}

func TestCounters(t *testing.T) {
	cs := []kstat.NetnsCounters{{Netns: 7}, {Netns: 8}}
	for _, c := range []struct {
		sel  *Selector
		want []uint64
	}{
		{nil, []uint64{7, 8}},
		{&Selector{}, []uint64{7, 8}},
		{&Selector{Flow: tracer.Filter{Netns: 8}}, []uint64{8}},
		{&Selector{Flow: tracer.Filter{Netns: 8, Port: 53}}, nil},
		{&Selector{Races: []incident.RaceType{incident.RaceEndpoints}}, nil},
		{&Selector{Since: time.Unix(1, 0)}, nil},
	} {
		var got []uint64
		for _, n := range c.sel.Counters(cs) {
			got = append(got, n.Netns)
		}
		if len(got) != len(c.want) || len(got) > 0 && got[0] != c.want[0] {
			t.Errorf("%v: counters of %v, want %v", c.sel, got, c.want)
		}
	}
	if len(cs) != 2 {
		t.Errorf("Counters changed its argument")
	}
}

func TestString(t *testing.T) {
	s := &Selector{Flow: tracer.Filter{Proto: 17, Port: 53}, Races: []incident.RaceType{1, 3}, Outcomes: []incident.Outcome{incident.OutcomeDropped}, Pod: "default/a", Since: time.Unix(0, 0).UTC()}
	if got, want := s.String(), "proto udp, port 53, race 1,3, outcome dropped, pod default/a, since 1970-01-01T00:00:00Z"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := (&Selector{}).String(); got != "" {
		t.Errorf("empty selection: %q", got)
	}
}
