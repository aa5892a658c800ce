package incident

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/ctprobe/ctprobe/tracer/event"
)

// scenario is one race as the kernel produces it, in both delivery modes.
type scenario struct {
	name   string
	all    []event.Event // --all: every event in time order
	replay []event.Event // --timeline: confirm_exit's replay
	want   want
}

type want struct {
	race     RaceType
	outcome  Outcome
	clashDir int
	loser    uint64
	winner   uint64 // 0: no winner expected
	window   uint64
	reason   []string // substrings of Reason
	// Loser stages in time order.
	loserStages []event.Kind
}

func check(t *testing.T, inc Incident, w want) {
	t.Helper()
	if inc.Race != w.race || inc.Outcome != w.outcome {
		t.Errorf("race %d %s, want race %d %s (reason: %s)", inc.Race, inc.Outcome, w.race, w.outcome, inc.Reason)
	}
	if inc.ClashDir != w.clashDir {
		t.Errorf("ClashDir %d, want %d", inc.ClashDir, w.clashDir)
	}
	if inc.Loser.CT != w.loser {
		t.Errorf("loser %#x, want %#x", inc.Loser.CT, w.loser)
	}
	if inc.HasWinner != (w.winner != 0) || inc.Winner.CT != w.winner {
		t.Errorf("winner %v %#x, want %#x", inc.HasWinner, inc.Winner.CT, w.winner)
	}
	if inc.Window != w.window {
		t.Errorf("window %d, want %d", inc.Window, w.window)
	}
	if inc.Reason == "" {
		t.Errorf("empty reason")
	}
	for _, s := range w.reason {
		if !strings.Contains(inc.Reason, s) {
			t.Errorf("reason %q lacks %q", inc.Reason, s)
		}
	}
	if w.loserStages != nil {
		var got []event.Kind
		for i, s := range inc.Loser.Timeline {
			got = append(got, s.Kind)
			if i > 0 && s.Time < inc.Loser.Timeline[i-1].Time {
				t.Errorf("loser timeline not in time order: %+v", inc.Loser.Timeline)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(w.loserStages) {
			t.Errorf("loser stages %v, want %v", got, w.loserStages)
		}
	}
	if inc.Loser.Timeline == nil && w.loserStages != nil {
		t.Errorf("no loser timeline")
	}
}

var (
	fullStages = []event.Kind{event.CTIn, event.NAT, event.NAT, event.Clash, event.Confirm}
	noClash    = []event.Kind{event.CTIn, event.NAT, event.NAT, event.Confirm}
)

// Pointers as a kernel would print them.
const (
	ctW  = 0xffff88800a3c1200
	ctL  = 0xffff88800a3c1300
	ctW2 = 0xffff88800a3c1400
	ctL2 = 0xffff88800a3c1500
)

// delivery is one way the kernel hands a scenario's events over.
type delivery struct {
	name string
	evs  []event.Event
}

// deliveries: --all's stream and --timeline's replay.
func (sc scenario) deliveries() []delivery {
	return []delivery{{"all", sc.all}, {"timeline", sc.replay}}
}

// twoPacket is a race between ctW (winner) and ctL (loser) whose every stage
// was seen.
func twoPacket(name string, all, rep []event.Event, w want) scenario {
	w.loser, w.winner, w.loserStages = ctL, ctW, fullStages
	return scenario{name: name, all: all, replay: rep, want: w}
}

// R1: both threads' queries DNAT to the same endpoint; merged (4.19+).
func scenarioR1Merged() scenario {
	w, l := glibcPair(ctW, ctL, endpoint1, endpoint1)
	all, rep := race(w, l, timing{w: [4]uint64{1000, 1200, 1400, 1500}, l: [3]uint64{1100, 1300, 1450}, clash: 1700}, 0, l.merged(1710, w))
	return twoPacket("R1 merged", all, rep, want{race: RaceIdentical, outcome: OutcomeMerged, clashDir: 0, window: 100,
		reason: []string{"identical tuples"}})
}

// R3: different endpoints; reply-only insert (5.6+).
func scenarioR3NATClash() scenario {
	w, l := glibcPair(ctW, ctL, endpoint1, endpoint2)
	all, rep := race(w, l, timing{w: [4]uint64{1000, 1100, 1200, 1300}, l: [3]uint64{1050, 1150, 1250}, clash: 1400}, 0, l.natClash(1410))
	return twoPacket("R3 nat-clash", all, rep, want{race: RaceEndpoints, outcome: OutcomeNATClash, clashDir: 0, window: 50,
		reason: []string{"10.244.2.2:53", "10.244.2.1:53", "IPS_NAT_CLASH"}})
}

// R3 on ≤5.5: dropped; nf_ct_resolve_clash probed (not inlined).
func scenarioR3Dropped() scenario {
	w, l := glibcPair(ctW, ctL, endpoint1, endpoint2)
	all, rep := race(w, l, timing{w: [4]uint64{1000, 1100, 1200, 1300}, l: [3]uint64{1050, 1150, 1250}, clash: 1400}, 0, l.dropped(1410))
	return twoPacket("R3 dropped", all, rep, want{race: RaceEndpoints, outcome: OutcomeDropped, clashDir: 0, window: 50,
		reason: []string{"different DNAT endpoints", "5.6"}})
}

// R2 on a kernel without the same-origin rule: W was confirmed before L's
// SRC null binding, which saw W's reply as taken and moved L's port.
func scenarioR2Dropped(gut bool) scenario {
	w, l := glibcPair(ctW, ctL, endpoint1, endpoint1)
	w.gut, l.gut = gut, gut
	l.snat = netip.AddrPortFrom(addr(podA), 41001)
	all, rep := race(w, l, timing{w: [4]uint64{1000, 1200, 1400, 1500}, l: [3]uint64{1100, 1300, 1600}, clash: 1700}, 0, l.dropped(1710))
	name := "R2 dropped"
	if gut {
		name += " (get_unique_tuple)"
	}
	return twoPacket(name, all, rep, want{race: RaceNATPort, outcome: OutcomeDropped, clashDir: 0, window: 100,
		reason: []string{"41000→41001", "winner holds 41000", "same-origin", "confirmed 100ns before"}})
}

// The R2 ordering on 5.0+: the same-origin rule keeps L's port, and the
// clash merges like R1.
func scenarioR2Defused() scenario {
	w, l := glibcPair(ctW, ctL, endpoint1, endpoint1)
	all, rep := race(w, l, timing{w: [4]uint64{1000, 1200, 1400, 1500}, l: [3]uint64{1100, 1300, 1600}, clash: 1700}, 0, l.merged(1710, w))
	return twoPacket("R2 defused, merged", all, rep, want{race: RaceIdentical, outcome: OutcomeMerged, clashDir: 0, window: 100,
		reason: []string{"race 2 ordering defused", "same-origin", "kept source port 41000"}})
}

// R4: two pods SNATed to the one node port; the clash is found in the reply
// bucket (W's REPLY node). Forwarded traffic: softirq context.
func scenarioR4Dropped() scenario {
	w := &flow{ct: ctW, cpu: 0, comm: "x", hook: event.HookPreRouting, netns: netnsHost,
		orig: tuple(udp, podA+":5555", "8.8.8.8:53"), snat: ap(nodeIP + ":40000"), dnsID: 0x3333, dnsType: 1, dnsName: "example.com"}
	l := &flow{ct: ctL, cpu: 1, comm: "x", hook: event.HookPreRouting, netns: netnsHost,
		orig: tuple(udp, podB+":5555", "8.8.8.8:53"), snat: ap(nodeIP + ":40000"), dnsID: 0x4444, dnsType: 1, dnsName: "example.org"}
	all, rep := race(w, l, timing{w: [4]uint64{1000, 1010, 1100, 1200}, l: [3]uint64{5000, 5010, 5100}, clash: 5200}, 1, l.dropped(5210))
	return twoPacket("R4 dropped", all, rep, want{race: RaceSNATPort, outcome: OutcomeDropped, clashDir: 1, window: 4000,
		reason: []string{"SNAT port collision", "10.0.0.1:40000", "REPLY node"}})
}

// R5 on 6.12+: two peers send to each other at once; no NAT rule (null
// bindings); merged through nf_ct_match_reverse.
func scenarioR5Merged() scenario {
	w := &flow{ct: ctW, cpu: 0, pid: 700, tid: 700, comm: "reverse_clash", hook: event.HookLocalOut, netns: netnsHost,
		orig: tuple(udp, "127.0.0.11:5001", "127.0.0.12:5002"), cookie: 0x51}
	l := &flow{ct: ctL, cpu: 1, pid: 700, tid: 701, comm: "reverse_clash", hook: event.HookLocalOut, netns: netnsHost,
		orig: tuple(udp, "127.0.0.12:5002", "127.0.0.11:5001"), cookie: 0x52}
	all, rep := race(w, l, timing{w: [4]uint64{1000, 1010, 1020, 1030}, l: [3]uint64{1001, 1011, 1021}, clash: 1040}, 1, l.merged(1041, w))
	return twoPacket("R5 merged", all, rep, want{race: RaceReverse, outcome: OutcomeMerged, clashDir: 1, window: 1,
		reason: []string{"reverse collision"}})
}

// R1 dropped: identical TCP SYNs from raw sockets (no allow_clash).
func scenarioR1DroppedTCP() scenario {
	orig := tuple(tcp, podA+":33000", "10.96.0.1:443")
	w := &flow{ct: ctW, cpu: 0, pid: 9, tid: 9, comm: "synflood", hook: event.HookLocalOut, netns: netnsHost, orig: orig, dnat: ap("10.244.3.1:6443")}
	l := &flow{ct: ctL, cpu: 1, pid: 9, tid: 10, comm: "synflood", hook: event.HookLocalOut, netns: netnsHost, orig: orig, dnat: ap("10.244.3.1:6443")}
	all, rep := race(w, l, timing{w: [4]uint64{1000, 1010, 1020, 1030}, l: [3]uint64{1001, 1011, 1021}, clash: 1040}, 0, l.dropped(1041))
	return twoPacket("R1 dropped (tcp)", all, rep, want{race: RaceIdentical, outcome: OutcomeDropped, clashDir: 0, window: 1,
		reason: []string{"tcp conntrack does not resolve clashes"}})
}

func scenarios() []scenario {
	return []scenario{
		scenarioR1Merged(),
		scenarioR3NATClash(),
		scenarioR3Dropped(),
		scenarioR2Dropped(false),
		scenarioR2Dropped(true),
		scenarioR2Defused(),
		scenarioR4Dropped(),
		scenarioR5Merged(),
		scenarioR1DroppedTCP(),
	}
}

func only(t *testing.T, incs []Incident) Incident {
	t.Helper()
	if len(incs) != 1 {
		for _, inc := range incs {
			t.Logf("incident: race %d %s loser %#x: %s", inc.Race, inc.Outcome, inc.Loser.CT, inc.Reason)
		}
		t.Fatalf("%d incidents, want 1", len(incs))
	}
	return incs[0]
}

func TestScenarios(t *testing.T) {
	for _, sc := range scenarios() {
		t.Run(sc.name+"/all", func(t *testing.T) {
			check(t, only(t, feed(t, New(Options{}), sc.all)), sc.want)
		})
		t.Run(sc.name+"/incident", func(t *testing.T) {
			c := New(Options{})
			var incs []Incident
			for i := range sc.replay {
				incs = append(incs, c.Add(&sc.replay[i])...)
			}
			// Replayed evidence is complete: no waiting for a window.
			check(t, only(t, incs), sc.want)
			if n := len(c.Flush()); n != 0 {
				t.Errorf("flush gave %d more incidents", n)
			}
		})
	}
}

// noise is an ordinary flow on another CPU: new ct, NAT, confirm, and some
// established packets. It must never produce an incident.
func noise(ct uint64, t0 uint64, n int) []event.Event {
	var out []event.Event
	for i := range n {
		f := &flow{ct: ct + uint64(i)*0x100, cpu: 2, pid: 555, tid: 555, comm: "nginx", hook: event.HookLocalOut, netns: netnsHost,
			orig: tuple(udp, fmt.Sprintf("10.244.1.9:%d", 30000+i), clusterIP), dnat: ap(endpoint2), cookie: 0x99}
		t := t0 + uint64(i)*37
		out = append(out, f.in(t), f.natDst(t+5), f.natSrc(t+9), f.inserted(t+12), f.established(t+20), f.established(t+25))
	}
	return out
}

func TestInterleavedWithOtherCPUs(t *testing.T) {
	for _, sc := range scenarios() {
		t.Run(sc.name+"/all", func(t *testing.T) {
			evs := interleave(noise(0xffff888011000000, 900, 20), sc.all)
			check(t, only(t, feed(t, New(Options{}), evs)), sc.want)
		})
		t.Run(sc.name+"/incident", func(t *testing.T) {
			// Another CPU replays another race at the same moment.
			other := scenarioR3NATClash()
			other.replay = relabel(other.replay, map[uint64]uint64{ctW: ctW2, ctL: ctL2})
			incs := feed(t, New(Options{}), interleave(other.replay, sc.replay))
			if len(incs) != 2 {
				t.Fatalf("%d incidents, want 2", len(incs))
			}
			for _, inc := range incs {
				if inc.Loser.CT == ctL2 {
					w := other.want
					w.loser, w.winner = ctL2, ctW2
					check(t, inc, w)
				} else {
					check(t, inc, sc.want)
				}
			}
		})
	}
}

func TestOrdinaryFlowsNoIncident(t *testing.T) {
	c := New(Options{})
	if incs := feed(t, c, noise(0xffff888500000000, 0, 100)); len(incs) != 0 {
		t.Fatalf("%d incidents", len(incs))
	}
	if st := c.Stats(); st.Events != 600 || st.Incidents != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// ---- benchmark ------------------------------------------------------------

// BenchmarkCorrelator feeds a realistic --all stream: ordinary DNS flows
// (a new ct, two NAT bindings, a confirm, a reply and a later packet) and,
// in "mix", one race (R1 merge or R3 reply-only insert) per 100 flows. ct
// pointers are recycled as the slab would. One op is one event.
func BenchmarkCorrelator(b *testing.B) {
	b.Run("mix", func(b *testing.B) { benchStream(b, benchEvents(100)) })
	b.Run("ordinary", func(b *testing.B) { benchStream(b, benchEvents(0)) })
}

func benchEvents(raceEvery int) []event.Event {
	const flows = 4096
	var evs []event.Event
	t := uint64(0)
	for i := range flows {
		ct := 0xffff888600000000 + uint64(i%1500)*0x140
		if raceEvery > 0 && i%raceEvery == raceEvery-1 {
			lEnd := endpoint1
			if i%(2*raceEvery) == 2*raceEvery-1 {
				lEnd = endpoint2
			}
			w, l := glibcPair(ct, ct+0x100000, endpoint1, lEnd)
			w.orig.SrcPort, l.orig.SrcPort = uint16(20000+i), uint16(20000+i)
			evs = append(evs, w.in(t), l.in(t+100), w.natDst(t+200), l.natDst(t+300), w.natSrc(t+400), l.natSrc(t+450), w.inserted(t+500),
				clash(t+700, l, w, 0))
			if lEnd == endpoint1 {
				evs = append(evs, l.merged(t+710, w))
			} else {
				evs = append(evs, l.natClash(t+710))
			}
		} else {
			f := &flow{ct: ct, cpu: uint32(i % 4), pid: 100, tid: 100, comm: "app", hook: event.HookLocalOut, netns: netnsHost,
				orig: tuple(udp, fmt.Sprintf("10.244.1.%d:%d", i%200, 30000+i%20000), clusterIP), dnat: ap(endpoint2), cookie: 7,
				dnsID: uint16(i), dnsType: 1, dnsName: "api.example.com"}
			evs = append(evs, f.in(t), f.natDst(t+5), f.natSrc(t+9), f.inserted(t+12), f.established(t+300), f.established(t+900))
		}
		t += 1000
	}
	return evs
}

func benchStream(b *testing.B, evs []event.Event) {
	span := evs[len(evs)-1].Time + 1000
	c := New(Options{MaxCTs: 4096})
	// Warm up: fill the tables once so that steady state is measured.
	for i := range evs {
		ev := evs[i]
		c.Add(&ev)
	}
	b.ReportAllocs()
	b.ResetTimer()
	incidents := 0
	for i := 0; i < b.N; i++ {
		ev := evs[i%len(evs)]
		ev.Time += uint64(i/len(evs)+1) * span
		incidents += len(c.Add(&ev))
	}
	b.StopTimer()
	b.ReportMetric(float64(incidents)/float64(b.N)*1e6, "incidents/Mevent")
	b.ReportMetric(float64(c.Stats().Tracked), "tracked")
}
