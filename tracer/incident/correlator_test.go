package incident

import (
	"fmt"
	"net/netip"
	"slices"
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

// defaultMode is what the default mode sends for a replayed race: only
// nf_ct_resolve_clash is probed, so the CLASH record and the loser as a
// CONFIRM record carrying what its skb holds there: the socket, the DNS
// message and whether it was made on this host. Nil when the race has no
// clash record.
func defaultMode(replay []event.Event) []event.Event {
	var cl, lIn *event.Event
	for i := range replay {
		switch ev := &replay[i]; {
		case ev.Kind == event.Clash:
			cl = ev
		case ev.Kind == event.CTIn && ev.Flags&event.FlagWinner == 0:
			lIn = ev
		}
	}
	if cl == nil || lIn == nil {
		return nil
	}
	conf := replay[len(replay)-1]
	conf.Payload, conf.PayloadLen = lIn.Payload, lIn.PayloadLen
	if lIn.Hook == event.HookLocalOut {
		conf.Flags |= event.FlagLocal
	}
	return []event.Event{*cl, conf}
}

// withoutStages keeps the reason phrases that need no NAT stage or birth,
// which only --timeline and --all --timeline see.
func withoutStages(reason []string) []string {
	var out []string
	for _, r := range reason {
		if !slices.ContainsFunc([]string{"ns before", "defused", "same-origin", "kept source port"}, func(s string) bool { return strings.Contains(r, s) }) {
			out = append(out, r)
		}
	}
	return out
}

// The default mode names the same race from the clash probe alone; the
// timeline holds the two stages it saw, and no window (no births seen).
func TestScenariosDefaultMode(t *testing.T) {
	for _, sc := range scenarios() {
		evs := defaultMode(sc.replay)
		if evs == nil {
			t.Fatalf("%s has no clash record", sc.name)
		}
		t.Run(sc.name, func(t *testing.T) {
			c := New(Options{})
			var incs []Incident
			for i := range evs {
				incs = append(incs, c.Add(&evs[i])...)
			}
			w := sc.want
			w.window, w.reason, w.loserStages = 0, withoutStages(w.reason), []event.Kind{event.Clash, event.Confirm}
			inc := only(t, incs)
			check(t, inc, w)
			if len(inc.Winner.Timeline) != 0 {
				t.Errorf("winner timeline %+v from records that never described it", inc.Winner.Timeline)
			}
		})
	}
}

// In the default mode the loser carries its task, socket and DNS query as
// its skb held them at the clash; the winner's socket is the loser's when
// their ORIGINAL tuples are one (one source address and port), and unknown
// otherwise, as is the winner's task.
func TestPacketDetailsDefaultMode(t *testing.T) {
	inc := only(t, feed(t, New(Options{}), defaultMode(scenarioR1Merged().replay)))
	l, w := &inc.Loser, &inc.Winner
	if l.Comm != "getent" || l.PID != 4242 || l.TID != 4243 || !l.Task || !l.HasSock || l.Sock.Cookie != 0x1f {
		t.Errorf("loser %q %d/%d task=%v socket %v %+v", l.Comm, l.PID, l.TID, l.Task, l.HasSock, l.Sock)
	}
	if !l.DNS.Valid || l.DNS.ID != 0x2222 || l.DNS.Type != 28 || l.DNS.Name != dnsName {
		t.Errorf("loser dns %+v", l.DNS)
	}
	if !w.HasSock || w.Sock != l.Sock || w.Task || w.DNS.Valid {
		t.Errorf("winner socket %v %+v, task %v, dns %+v: want the loser's socket, no task, no query", w.HasSock, w.Sock, w.Task, w.DNS)
	}
	if want := tuple(udp, podA+":41000", clusterIP); l.Orig != want || w.Orig != want {
		t.Errorf("orig L %v W %v", l.Orig, w.Orig)
	}

	// Race 4: two pods, forwarded: no socket and no sender task at the node.
	inc = only(t, feed(t, New(Options{}), defaultMode(scenarioR4Dropped().replay)))
	l, w = &inc.Loser, &inc.Winner
	if l.Task || l.HasSock || w.HasSock || !l.DNS.Valid || l.DNS.ID != 0x4444 {
		t.Errorf("race 4: loser task %v socket %v dns %+v, winner socket %v", l.Task, l.HasSock, l.DNS, w.HasSock)
	}
}

// allMode is what --all sends for a replayed race: the winner's own
// confirm record, as confirm's exit reads it for every new ct that did not
// clash (socket, DNS message, whether made on this host), then the default
// mode's pair, which is not marked as sent together. Nil when the race has
// no clash record or no winner confirm.
func allMode(replay []event.Event) []event.Event {
	pair := defaultMode(replay)
	var wConf, wIn *event.Event
	for i := range replay {
		switch ev := &replay[i]; {
		case ev.Flags&event.FlagWinner == 0:
		case ev.Kind == event.Confirm:
			wConf = ev
		case ev.Kind == event.CTIn:
			wIn = ev
		}
	}
	if pair == nil || wConf == nil || wIn == nil {
		return nil
	}
	w := *wConf
	w.Flags &^= event.FlagHistory | event.FlagWinner
	w.Payload, w.PayloadLen = wIn.Payload, wIn.PayloadLen
	if wIn.Hook == event.HookLocalOut {
		w.Flags |= event.FlagLocal
	}
	pair[0].Flags &^= event.FlagHistory
	return append([]event.Event{w}, pair...)
}

// --all names the same races as the default mode, and the winner from its
// own confirm record: its confirm stage and, where it was sent here, its
// task and DNS query. The incident waits for the reorder window (the
// winner's record may come late), so it arrives no sooner than that.
func TestScenariosAllMode(t *testing.T) {
	n := 0
	for _, sc := range scenarios() {
		evs := allMode(sc.replay)
		if evs == nil {
			continue
		}
		n++
		t.Run(sc.name, func(t *testing.T) {
			c := New(Options{})
			for i := range evs {
				if incs := c.Add(&evs[i]); len(incs) != 0 {
					t.Fatalf("incident before the reorder window passed: %+v", incs)
				}
			}
			last := evs[len(evs)-1].Time
			if incs := c.Advance(last + uint64(DefaultReorderWindow) - 1); len(incs) != 0 {
				t.Fatalf("incident 1 ns before the reorder window ended")
			}
			w := sc.want
			w.window, w.reason, w.loserStages = 0, withoutStages(w.reason), []event.Kind{event.Clash, event.Confirm}
			inc := only(t, c.Advance(last+uint64(DefaultReorderWindow)))
			check(t, inc, w)
			if st := inc.Winner.Timeline; len(st) != 1 || st[0].Kind != event.Confirm || st[0].Time != evs[0].Time {
				t.Errorf("winner timeline %+v, want its confirm at %d", st, evs[0].Time)
			}
			if wantTask := evs[0].Flags&event.FlagLocal != 0 && evs[0].Flags&event.FlagSock != 0; inc.Winner.Task != wantTask ||
				wantTask && (inc.Winner.PID != evs[0].PID || inc.Winner.Sock != evs[0].Sock || inc.Winner.DNS.Valid != (evs[0].PayloadLen > 0)) {
				t.Errorf("winner task %v pid %d socket %+v dns %+v, from %+v", inc.Winner.Task, inc.Winner.PID, inc.Winner.Sock, inc.Winner.DNS, evs[0])
			}
			if len(c.Flush()) != 0 {
				t.Errorf("flush gave more incidents")
			}
		})
	}
	if n == 0 {
		t.Fatal("no scenario has a clash and a winner confirm")
	}
}

// --all where only __nf_ct_resolve_clash could be probed (it sees merges
// only): a reply-only insert reaches confirm's exit without a pair, and its
// winner is found by tuple among the inserts --all printed.
func TestAllModeReplyOnlyWithoutPair(t *testing.T) {
	w, l := glibcPair(ctW, ctL, endpoint1, endpoint2)
	evs := []event.Event{w.inserted(1000), l.natClash(1300)}
	inc := only(t, feed(t, New(Options{}), evs))
	if inc.Race != RaceEndpoints || inc.Outcome != OutcomeNATClash || inc.Winner.CT != ctW || inc.Loser.CT != ctL {
		t.Errorf("race %d %s, loser %#x winner %#x", inc.Race, inc.Outcome, inc.Loser.CT, inc.Winner.CT)
	}
}

// --all: a winner whose insert record comes after its loser's pair (its
// confirm's exit ran late on another CPU) gives one incident, with the
// winner's task and stage from that record while it comes within the
// reorder window; one later than that is left out (its pointer may have
// been reused), and the clash still names the winner.
func TestAllModeLateWinnerConfirm(t *testing.T) {
	for _, c := range []struct {
		after     uint64
		wantStage bool
	}{
		{5, true},
		{uint64(DefaultReorderWindow) - 1, true},
		{uint64(DefaultReorderWindow) + 1, false},
	} {
		evs := allMode(scenarioR3NATClash().replay)
		late := append(evs[1:], evs[0])
		late[2].Time = late[1].Time + c.after
		inc := only(t, feed(t, New(Options{}), late))
		if inc.Race != RaceEndpoints || inc.Winner.CT != ctW || inc.Winner.Orig != evs[0].Orig {
			t.Errorf("%d ns late: race %d winner %#x orig %v", c.after, inc.Race, inc.Winner.CT, inc.Winner.Orig)
		}
		if got := len(inc.Winner.Timeline) == 1 && inc.Winner.Task && inc.Winner.PID == evs[0].PID; got != c.wantStage {
			t.Errorf("%d ns late: winner timeline %+v task %v pid %d, want its insert: %v", c.after, inc.Winner.Timeline, inc.Winner.Task, inc.Winner.PID, c.wantStage)
		}
	}
}

// The loser's and winner's packets carry the task, socket and DNS query.
func TestPacketDetails(t *testing.T) {
	sc := scenarioR1Merged()
	for _, mode := range sc.deliveries() {
		t.Run(mode.name, func(t *testing.T) {
			inc := only(t, feed(t, New(Options{}), mode.evs))
			l, w := &inc.Loser, &inc.Winner
			if l.Comm != "getent" || l.PID != 4242 || l.TID != 4243 || l.CPU != 1 || !l.Task {
				t.Errorf("loser task %q %d/%d cpu %d task=%v", l.Comm, l.PID, l.TID, l.CPU, l.Task)
			}
			if !l.HasSock || l.Sock.Cookie != 0x1f {
				t.Errorf("loser socket %v %+v", l.HasSock, l.Sock)
			}
			if l.Netns != netnsHost {
				t.Errorf("netns %d", l.Netns)
			}
			if !l.DNS.Valid || l.DNS.ID != 0x2222 || l.DNS.Type != 28 || l.DNS.Name != dnsName || l.DNS.Response {
				t.Errorf("loser dns %+v", l.DNS)
			}
			if !w.DNS.Valid || w.DNS.ID != 0x1111 || w.DNS.Type != 1 {
				t.Errorf("winner dns %+v", w.DNS)
			}
			if w.TID != 4242 || w.Born != 1000 || l.Born != 1100 {
				t.Errorf("born W %d L %d, winner tid %d", w.Born, l.Born, w.TID)
			}
			wantOrig := tuple(udp, podA+":41000", clusterIP)
			wantReply := tuple(udp, endpoint1, podA+":41000")
			if l.Orig != wantOrig || l.Reply != wantReply || l.ReplyPre != invert(wantOrig) || !l.NATChange || l.PortMoved {
				t.Errorf("loser tuples orig %v reply %v pre %v change %v moved %v", l.Orig, l.Reply, l.ReplyPre, l.NATChange, l.PortMoved)
			}
			if w.Orig != wantOrig || w.Reply != wantReply {
				t.Errorf("winner tuples %v %v", w.Orig, w.Reply)
			}
			// DST binding changed the reply source; the SRC null binding did not.
			var dst, src *Stage
			for i := range l.Timeline {
				s := &l.Timeline[i]
				if s.Kind == event.NAT && s.Manip == event.ManipDst {
					dst = s
				}
				if s.Kind == event.NAT && s.Manip == event.ManipSrc {
					src = s
				}
			}
			if dst == nil || !dst.Change || dst.After.SrcString() != endpoint1 || dst.Before.SrcString() != clusterIP {
				t.Errorf("dst stage %+v", dst)
			}
			if src == nil || src.Change {
				t.Errorf("src stage %+v", src)
			}
			if got := len(w.Timeline); got != 4 {
				t.Errorf("winner timeline has %d stages", got)
			}
		})
	}
}

// Forwarded traffic runs in softirq: the task is not the sender.
func TestForwardedTaskIsIncidental(t *testing.T) {
	inc := only(t, feed(t, New(Options{}), scenarioR4Dropped().all))
	if inc.Loser.Task || inc.Loser.Comm != "swapper/1" || inc.Loser.HasSock {
		t.Errorf("loser task=%v comm %q sock %v", inc.Loser.Task, inc.Loser.Comm, inc.Loser.HasSock)
	}
	if !inc.Loser.DNS.Valid || inc.Loser.DNS.Name != "example.org" {
		t.Errorf("dns %+v", inc.Loser.DNS)
	}
	if !inc.Loser.PortMoved || !inc.Loser.NATChange {
		t.Errorf("SNAT to 40000 should show as a moved port: %+v", inc.Loser)
	}
}

// A forwarded pod packet whose sender the origin probe found (net_dev_queue
// in the pod's netns): the task is the sender after all.
func TestForwardedWithOrigin(t *testing.T) {
	sc := scenarioR4Dropped()
	for i := range sc.all {
		ev := &sc.all[i]
		if ev.Kind == event.CTIn && ev.CT == ctL {
			ev.Flags |= event.FlagOrigin | event.FlagSock
			ev.PID, ev.TID = 3100, 3101
			ev.Comm = [16]byte{}
			copy(ev.Comm[:], "nslookup")
			ev.Sock = event.Socket{Cookie: 0x77, Inode: 88, Family: 2, State: 7, Port: 5555}
		}
	}
	inc := only(t, feed(t, New(Options{}), sc.all))
	if l := inc.Loser; !l.Task || l.Comm != "nslookup" || l.TID != 3101 || !l.HasSock || l.Sock.Cookie != 0x77 {
		t.Errorf("loser %+v", l)
	}
	if inc.Winner.Task {
		t.Errorf("winner without origin marked as task context")
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

// relabel moves events to other ct pointers.
func relabel(evs []event.Event, m map[uint64]uint64) []event.Event {
	out := make([]event.Event, len(evs))
	for i, ev := range evs {
		if n, ok := m[ev.CT]; ok {
			ev.CT = n
		}
		if n, ok := m[ev.OtherCT]; ok {
			ev.OtherCT = n
		}
		out[i] = ev
	}
	return out
}

// In --all mode the winner's events, written on another CPU, may arrive
// after the loser's confirm: the incident waits for them.
func TestOutOfOrderWinner(t *testing.T) {
	for _, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			var early, late []event.Event
			for _, ev := range sc.all {
				if ev.CT == ctW && ev.Kind != event.Clash {
					late = append(late, ev)
				} else {
					early = append(early, ev)
				}
			}
			c := New(Options{})
			evs := append(early, late...)
			var incs []Incident
			for i := range evs {
				incs = append(incs, c.Add(&evs[i])...)
			}
			if len(incs) != 0 {
				t.Fatalf("incident before the reorder window passed")
			}
			if c.Stats().Pending != 1 {
				t.Fatalf("pending %d", c.Stats().Pending)
			}
			// A later event of any flow moves time past the window.
			tick := noise(0xffff888012000000, sc.all[len(sc.all)-1].Time+uint64(DefaultReorderWindow), 1)
			for i := range tick {
				incs = append(incs, c.Add(&tick[i])...)
			}
			check(t, only(t, incs), sc.want)
		})
	}
}

// The loser's birth arrives after its confirm (NFQUEUE reinjection on
// another CPU): it still joins the right record.
func TestOutOfOrderLoserBirth(t *testing.T) {
	sc := scenarioR3NATClash()
	var evs []event.Event
	var lIn event.Event
	for _, ev := range sc.all {
		if ev.Kind == event.CTIn && ev.CT == ctL {
			lIn = ev
			continue
		}
		evs = append(evs, ev)
	}
	evs = append(evs, lIn)
	check(t, only(t, feed(t, New(Options{}), evs)), sc.want)
}

func TestAdvanceCompletesPending(t *testing.T) {
	sc := scenarioR1Merged()
	c := New(Options{ReorderWindow: 5000})
	for i := range sc.all {
		if incs := c.Add(&sc.all[i]); len(incs) != 0 {
			t.Fatalf("early incident")
		}
	}
	if incs := c.Advance(1710 + 4999); len(incs) != 0 {
		t.Fatalf("incident before its deadline")
	}
	check(t, only(t, c.Advance(1710+5000)), sc.want)
	// No waiting at all when asked.
	c = New(Options{ReorderWindow: -1})
	var incs []Incident
	for i := range sc.all {
		incs = append(incs, c.Add(&sc.all[i])...)
	}
	check(t, only(t, incs), sc.want)
}

// ---- missing evidence ---------------------------------------------------

// --timeline, the winner's history evicted from the kernel LRU: only
// the CLASH event describes W.
func TestMissingWinnerHistory(t *testing.T) {
	w, l := glibcPair(ctW, ctL, endpoint1, endpoint2)
	lIn, lDst, lSrc := l.in(1050), l.natDst(1150), l.natSrc(1250)
	cl := clash(1400, l, w, 0)
	evs := replay(history{&lIn, &lSrc, &lDst, nil}, &cl, nil, l.natClash(1410))
	inc := only(t, feed(t, New(Options{}), evs))
	check(t, inc, want{race: RaceEndpoints, outcome: OutcomeNATClash, clashDir: 0, loser: ctL, winner: ctW, window: 0,
		reason: []string{"different DNAT endpoints"}, loserStages: fullStages})
	if inc.Winner.Born != 0 || inc.Winner.Reply.SrcString() != endpoint1 || inc.Winner.Orig != l.orig || len(inc.Winner.Timeline) != 0 {
		t.Errorf("winner from the clash event: %+v", inc.Winner)
	}
	if inc.Winner.Netns != netnsHost {
		t.Errorf("winner netns %d", inc.Winner.Netns)
	}
}

// --timeline, the loser's history lost: the CLASH and confirm remain.
func TestMissingLoserHistory(t *testing.T) {
	w, l := glibcPair(ctW, ctL, endpoint1, endpoint2)
	wIn, wDst, wSrc, wConf := w.in(1000), w.natDst(1100), w.natSrc(1200), w.inserted(1300)
	cl := clash(1400, l, w, 0)
	evs := replay(history{}, &cl, &history{&wIn, &wSrc, &wDst, &wConf}, l.natClash(1410))
	inc := only(t, feed(t, New(Options{}), evs))
	check(t, inc, want{race: RaceEndpoints, outcome: OutcomeNATClash, clashDir: 0, loser: ctL, winner: ctW,
		loserStages: []event.Kind{event.Clash, event.Confirm}})
	if inc.Loser.Born != 0 || inc.Loser.Comm != "getent" || inc.Loser.TID != 4243 || !inc.Loser.HasSock || inc.Loser.DNS.Valid {
		t.Errorf("loser from its confirm: %+v", inc.Loser)
	}
}

// 4.19/5.4: nf_ct_resolve_clash is inlined, so a merge has no CLASH; the
// merge pointer names W and W's history gives its tuples.
func TestMergeWithoutClashEvent(t *testing.T) {
	sc := scenarioR1Merged()
	for _, mode := range sc.deliveries() {
		t.Run(mode.name, func(t *testing.T) {
			var evs []event.Event
			for _, ev := range mode.evs {
				if ev.Kind != event.Clash {
					evs = append(evs, ev)
				}
			}
			w := sc.want
			w.clashDir = -1
			w.loserStages = noClash
			w.reason = append(w.reason, "winner from the merge")
			check(t, only(t, feed(t, New(Options{}), evs)), w)
		})
	}
}

// A merge whose winner left no trace at all.
func TestMergeWinnerUnknown(t *testing.T) {
	w, l := glibcPair(ctW, ctL, endpoint1, endpoint1)
	evs := []event.Event{l.in(1100), l.natDst(1300), l.natSrc(1450), l.merged(1710, w)}
	inc := only(t, feed(t, New(Options{}), evs))
	check(t, inc, want{race: RaceUnknown, outcome: OutcomeMerged, clashDir: -1, loser: ctL, winner: ctW,
		reason: []string{"tuples not seen", "race 1"}, loserStages: noClash})
}

// ≤5.5 drop without a CLASH event. --all mode pairs L with the confirmed
// entry holding its ORIGINAL tuple; --timeline has no winner to replay.
func TestDropWithoutClashEvent(t *testing.T) {
	sc := scenarioR3Dropped()
	strip := func(evs []event.Event) []event.Event {
		var out []event.Event
		for _, ev := range evs {
			if ev.Kind != event.Clash {
				out = append(out, ev)
			}
		}
		return out
	}
	t.Run("all", func(t *testing.T) {
		w := sc.want
		w.clashDir = -1
		w.loserStages = noClash
		w.reason = append(w.reason, "confirmed entry with the loser's tuple")
		check(t, only(t, feed(t, New(Options{}), strip(sc.all))), w)
	})
	t.Run("incident", func(t *testing.T) {
		// The kernel replays W only when it knows W: here just L.
		w, l := glibcPair(ctW, ctL, endpoint1, endpoint2)
		_ = w
		lIn, lDst, lSrc := l.in(1050), l.natDst(1150), l.natSrc(1250)
		evs := replay(history{&lIn, &lSrc, &lDst, nil}, nil, nil, l.dropped(1410))
		check(t, only(t, feed(t, New(Options{}), evs)), want{race: RaceUnknown, outcome: OutcomeDropped, clashDir: -1, loser: ctL,
			reason: []string{"winner unknown", "no nf_ct_resolve_clash event"}, loserStages: noClash})
	})
	t.Run("R4 by reply tuple", func(t *testing.T) {
		r4 := scenarioR4Dropped()
		w := r4.want
		w.clashDir = -1
		w.loserStages = noClash
		w.reason = []string{"SNAT port collision", "confirmed entry with the loser's tuple"}
		check(t, only(t, feed(t, New(Options{}), strip(r4.all))), w)
	})
}

// The loser's NAT events were lost (ring buffer full): the confirm's
// tuples still show the moved port.
func TestLostNAT(t *testing.T) {
	sc := scenarioR2Dropped(false)
	var evs []event.Event
	for _, ev := range sc.all {
		if ev.Kind == event.NAT && ev.CT == ctL {
			continue
		}
		evs = append(evs, ev)
	}
	w := sc.want
	w.reason = []string{"41000→41001", "winner holds 41000", "without a SRC NAT event"}
	w.loserStages = []event.Kind{event.CTIn, event.Clash, event.Confirm}
	inc := only(t, feed(t, New(Options{}), evs))
	check(t, inc, w)
	if !inc.Loser.PortMoved || !inc.Loser.NATChange {
		t.Errorf("loser moved=%v change=%v", inc.Loser.PortMoved, inc.Loser.NATChange)
	}
}

// A CLASH whose confirm was lost is reported at the end of the stream.
func TestClashWithoutConfirm(t *testing.T) {
	sc := scenarioR3NATClash()
	var evs []event.Event
	for _, ev := range sc.all {
		if !(ev.Kind == event.Confirm && ev.CT == ctL) {
			evs = append(evs, ev)
		}
	}
	inc := only(t, feed(t, New(Options{}), evs))
	check(t, inc, want{race: RaceEndpoints, outcome: OutcomeUnknown, clashDir: 0, loser: ctL, winner: ctW, window: 50,
		reason: []string{"confirm event was lost", "tuples alone"}, loserStages: []event.Kind{event.CTIn, event.NAT, event.NAT, event.Clash}})
}

// ---- ct pointer reuse -----------------------------------------------------

// reuse: ctL loses an R4 race and is dropped; the same pointer is reborn at
// once for a glibc query that then loses an R1 race to ctW2.
func reuse() (all, replayed []event.Event, first, second want) {
	r4 := scenarioR4Dropped()
	w2, l2 := glibcPair(ctW2, ctL, endpoint1, endpoint1)
	t0 := uint64(5300) // right after the R4 drop at 5210
	wIn, lIn := w2.in(t0), l2.in(t0+10)
	wDst, lDst := w2.natDst(t0+20), l2.natDst(t0+30)
	wSrc, lSrc := w2.natSrc(t0+40), l2.natSrc(t0+50)
	wConf := w2.inserted(t0 + 60)
	cl := clash(t0+70, l2, w2, 0)
	lConf := l2.merged(t0+80, w2)
	all = append(clone(r4.all), byTime(wIn, lIn, wDst, lDst, wSrc, lSrc, wConf, cl, lConf)...)
	replayed = append(clone(r4.replay), replay(history{&lIn, &lSrc, &lDst, nil}, &cl, &history{&wIn, &wSrc, &wDst, &wConf}, lConf)...)
	second = want{race: RaceIdentical, outcome: OutcomeMerged, clashDir: 0, loser: ctL, winner: ctW2, window: 10,
		reason: []string{"identical tuples"}, loserStages: fullStages}
	return all, replayed, r4.want, second
}

func clone(evs []event.Event) []event.Event { return append([]event.Event(nil), evs...) }

func checkReuse(t *testing.T, incs []Incident, first, second want) {
	t.Helper()
	if len(incs) != 2 {
		t.Fatalf("%d incidents, want 2", len(incs))
	}
	if incs[0].Time > incs[1].Time {
		incs[0], incs[1] = incs[1], incs[0]
	}
	check(t, incs[0], first)
	check(t, incs[1], second)
	old, cur := &incs[0].Loser, &incs[1].Loser
	if old.DNS.ID != 0x4444 || cur.DNS.ID != 0x2222 {
		t.Errorf("dns ids %#x %#x: history leaked between generations", old.DNS.ID, cur.DNS.ID)
	}
	if cur.Born != 5310 || cur.Comm != "getent" || cur.Orig.SrcPort != 41000 {
		t.Errorf("new generation: born %d comm %q orig %v", cur.Born, cur.Comm, cur.Orig)
	}
	for _, s := range cur.Timeline {
		if s.Time < 5300 {
			t.Errorf("old stage in the new generation's timeline: %+v", s)
		}
	}
	for _, s := range old.Timeline {
		if s.Time >= 5300 {
			t.Errorf("new stage in the old generation's timeline: %+v", s)
		}
	}
}

func TestPointerReuse(t *testing.T) {
	all, replayed, first, second := reuse()
	t.Run("all", func(t *testing.T) {
		checkReuse(t, feed(t, New(Options{}), all), first, second)
	})
	t.Run("incident", func(t *testing.T) {
		checkReuse(t, feed(t, New(Options{}), replayed), first, second)
	})
	t.Run("all, reborn before the old confirm arrives", func(t *testing.T) {
		// The old generation's CLASH and confirm come in after the new
		// generation's birth (another CPU's records delivered late).
		var late, rest []event.Event
		for _, ev := range all {
			if ev.CT == ctL && ev.Time < 5300 && (ev.Kind == event.Confirm || ev.Kind == event.Clash || ev.Kind == event.NAT) {
				late = append(late, ev)
			} else {
				rest = append(rest, ev)
			}
		}
		var evs []event.Event
		for _, ev := range rest {
			evs = append(evs, ev)
			if ev.CT == ctL && ev.Kind == event.CTIn && ev.Time == 5310 {
				evs = append(evs, late...)
			}
		}
		checkReuse(t, feed(t, New(Options{}), evs), first, second)
	})
	t.Run("all, ordinary rebirth", func(t *testing.T) {
		// Reborn for an ordinary flow: no incident, nothing carried over.
		r4 := scenarioR4Dropped()
		f := &flow{ct: ctL, cpu: 3, pid: 77, tid: 77, comm: "curl", hook: event.HookLocalOut, netns: netnsHost,
			orig: tuple(tcp, nodeIP+":50000", "93.184.216.34:443")}
		evs := append(clone(r4.all), f.in(6000), f.natDst(6010), f.natSrc(6020), f.inserted(6030), f.established(6100))
		c := New(Options{})
		incs := feed(t, c, evs)
		check(t, only(t, incs), r4.want)
	})
}

// ---- bounded memory -------------------------------------------------------

func TestFloodOfUnpairedBirths(t *testing.T) {
	c := New(Options{MaxCTs: 1024, MaxAge: 1_000_000_000})
	f := &flow{cpu: 0, pid: 1, tid: 1, comm: "flood", hook: event.HookLocalOut, netns: netnsHost,
		orig: tuple(udp, podA+":1", clusterIP)}
	const n = 200_000
	for i := range n {
		f.ct = 0xffff888100000000 + uint64(i)*0x140
		f.orig.SrcPort = uint16(i)
		ev := f.in(uint64(i) * 10)
		if incs := c.Add(&ev); len(incs) != 0 {
			t.Fatalf("incident from a birth")
		}
		if i%1000 == 0 && c.Stats().Tracked > 1024 {
			t.Fatalf("tracked %d > 1024", c.Stats().Tracked)
		}
	}
	st := c.Stats()
	if st.Tracked > 1024 || st.Evicted < n-1024 || c.byCT.len() > 1024 || c.byTuple.len() != 0 {
		t.Fatalf("stats %+v, byCT %d", st, c.byCT.len())
	}
	// The correlator still works after the flood.
	sc := scenarioR3NATClash()
	for i := range sc.all {
		sc.all[i].Time += n * 10
	}
	check(t, only(t, feed(t, c, sc.all)), sc.want)
	if st := c.Stats(); st.Tracked != 0 || c.byCT.len() != 0 || c.byTuple.len() != 0 {
		t.Fatalf("after flush: %+v", st)
	}
}

func TestFloodOfConfirmedFlows(t *testing.T) {
	c := New(Options{MaxCTs: 512})
	evs := noise(0xffff888200000000, 0, 20_000)
	for i := range evs {
		if incs := c.Add(&evs[i]); len(incs) != 0 {
			t.Fatalf("incident from an ordinary flow: %+v", incs[0])
		}
	}
	st := c.Stats()
	if st.Tracked > 512 || c.byTuple.len() > 2*512 || st.Events != uint64(len(evs)) || st.Incidents != 0 {
		t.Fatalf("stats %+v, index %d", st, c.byTuple.len())
	}
}

func TestExpiryByAge(t *testing.T) {
	c := New(Options{MaxAge: 1000})
	evs := noise(0xffff888300000000, 0, 10)
	for i := range evs {
		c.Add(&evs[i])
	}
	if c.Stats().Tracked == 0 {
		t.Fatal("nothing tracked")
	}
	c.Advance(evs[len(evs)-1].Time + 1001)
	if st := c.Stats(); st.Tracked != 0 || st.Expired == 0 || c.byTuple.len() != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// One pointer reborn over and over keeps at most two generations.
func TestReusedPointerFlood(t *testing.T) {
	c := New(Options{})
	f := &flow{ct: ctL, cpu: 0, pid: 1, tid: 1, comm: "x", hook: event.HookLocalOut, netns: netnsHost, orig: tuple(udp, podA+":1", clusterIP)}
	for i := range 10_000 {
		ev := f.in(uint64(i) * 100)
		c.Add(&ev)
		nat := f.natDst(uint64(i)*100 + 10)
		c.Add(&nat)
	}
	if st := c.Stats(); st.Tracked > 2 {
		t.Fatalf("tracked %d for one pointer", st.Tracked)
	}
}

// Race confirms arriving faster than the window completes them.
func TestPendingBound(t *testing.T) {
	c := New(Options{MaxPending: 8, ReorderWindow: 1 << 40})
	_, l := glibcPair(ctW, ctL, endpoint1, endpoint1)
	var n int
	for i := range 100 {
		l.ct = 0xffff888400000000 + uint64(i)*0x140
		ev := l.dropped(uint64(i))
		n += len(c.Add(&ev))
		if c.Stats().Pending > 8 {
			t.Fatalf("pending %d", c.Stats().Pending)
		}
	}
	n += len(c.Flush())
	if n != 100 {
		t.Fatalf("%d incidents, want 100", n)
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

// get_unique_tuple reports ORIGINAL-direction tuples; the timeline shows
// every NAT stage in REPLY direction either way.
func TestNATStagesSameForBothProbePoints(t *testing.T) {
	setup := only(t, feed(t, New(Options{}), scenarioR2Dropped(false).all))
	gut := only(t, feed(t, New(Options{}), scenarioR2Dropped(true).all))
	if fmt.Sprint(setup.Loser.Timeline) != fmt.Sprint(gut.Loser.Timeline) {
		t.Errorf("timelines differ:\nsetup_info %+v\nget_unique_tuple %+v", setup.Loser.Timeline, gut.Loser.Timeline)
	}
	for _, s := range gut.Loser.Timeline {
		if s.Kind != event.NAT || s.Manip != event.ManipSrc {
			continue
		}
		if !s.Change || s.Before.DstString() != podA+":41000" || s.After.DstString() != podA+":41001" || s.After.SrcString() != endpoint1 {
			t.Errorf("SRC stage %v -> %v change=%v", s.Before, s.After, s.Change)
		}
	}
}

// A drop with no CLASH event must not be pinned on an entry with the same
// ORIGINAL tuple that was confirmed before the loser was born: that entry
// would have caught the loser's packet in nf_conntrack_in.
func TestTupleLookupIgnoresOlderEntries(t *testing.T) {
	old, l := glibcPair(ctW, ctL, endpoint1, endpoint2)
	evs := []event.Event{old.in(100), old.natDst(110), old.natSrc(120), old.inserted(130),
		l.in(1050), l.natDst(1150), l.natSrc(1250), l.dropped(1410)}
	inc := only(t, feed(t, New(Options{}), evs))
	check(t, inc, want{race: RaceUnknown, outcome: OutcomeDropped, clashDir: -1, loser: ctL,
		reason: []string{"winner unknown"}, loserStages: noClash})
}

// --timeline: the kernel's history for W's pointer is that of an older
// ct at the same address (it died without a trace, and W was born without a
// CT_IN the probe saw). The CLASH event's tuples expose it.
func TestStaleWinnerHistory(t *testing.T) {
	w, l := glibcPair(ctW, ctL, endpoint1, endpoint2)
	ghost := &flow{ct: ctW, cpu: 3, pid: 1, tid: 1, comm: "ghost", hook: event.HookLocalOut, netns: netnsHost,
		orig: tuple(udp, podB+":999", "10.96.0.20:80"), dnat: ap("10.244.9.9:8080")}
	gIn, gDst, gSrc, gConf := ghost.in(10), ghost.natDst(20), ghost.natSrc(30), ghost.inserted(40)
	lIn, lDst, lSrc := l.in(1050), l.natDst(1150), l.natSrc(1250)
	cl := clash(1400, l, w, 0)
	evs := replay(history{&lIn, &lSrc, &lDst, nil}, &cl, &history{&gIn, &gSrc, &gDst, &gConf}, l.natClash(1410))
	inc := only(t, feed(t, New(Options{}), evs))
	check(t, inc, want{race: RaceEndpoints, outcome: OutcomeNATClash, clashDir: 0, loser: ctL, winner: ctW,
		reason: []string{"belonged to an earlier ct"}, loserStages: fullStages})
	if inc.Winner.Comm == "ghost" || len(inc.Winner.Timeline) != 0 || inc.Winner.Orig != l.orig {
		t.Errorf("winner built from the stale history: %+v", inc.Winner)
	}
}

// Three queries, two endpoints (5.6+): W wins, W2 is inserted reply-only,
// and L, which picked W2's endpoint, clashes with W (the CLASH names W) but
// nf_ct_resolve_clash_harder finds W2 in the reply bucket and merges L into
// it. The winner is the merge target.
func TestMergeIntoReplyOnlyEntry(t *testing.T) {
	w, w2 := glibcPair(ctW, ctW2, endpoint1, endpoint2)
	_, l := glibcPair(ctW, ctL, endpoint1, endpoint2)
	l.tid, l.dnsID = 4244, 0x3333
	wIn, w2In, lIn := w.in(1000), w2.in(1010), l.in(1020)
	wDst, w2Dst, lDst := w.natDst(1100), w2.natDst(1110), l.natDst(1120)
	wSrc, w2Src, lSrc := w.natSrc(1200), w2.natSrc(1210), l.natSrc(1220)
	wConf := w.inserted(1300)
	cl2 := clash(1400, w2, w, 0)
	w2Conf := w2.natClash(1410)
	cl := clash(1500, l, w, 0)
	lConf := l.merged(1510, w2)
	first := want{race: RaceEndpoints, outcome: OutcomeNATClash, clashDir: 0, loser: ctW2, winner: ctW, window: 10, loserStages: fullStages}
	second := want{race: RaceIdentical, outcome: OutcomeMerged, clashDir: 0, loser: ctL, winner: ctW2, window: 10,
		reason: []string{"identical tuples", fmt.Sprintf("nf_ct_resolve_clash named %#x, the merge went to %#x", uint64(ctW), uint64(ctW2))}, loserStages: fullStages}
	modes := []struct {
		name string
		evs  []event.Event
	}{
		{"all", byTime(wIn, w2In, lIn, wDst, w2Dst, lDst, wSrc, w2Src, lSrc, wConf, cl2, w2Conf, cl, lConf)},
		// The kernel replays the history of the ct the CLASH named (W), not
		// of the merge target; W2 is known from its own incident.
		{"incident", append(
			replay(history{&w2In, &w2Src, &w2Dst, nil}, &cl2, &history{&wIn, &wSrc, &wDst, &wConf}, w2Conf),
			replay(history{&lIn, &lSrc, &lDst, nil}, &cl, &history{&wIn, &wSrc, &wDst, &wConf}, lConf)...)},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			incs := feed(t, New(Options{}), m.evs)
			if len(incs) != 2 {
				t.Fatalf("%d incidents", len(incs))
			}
			check(t, incs[0], first)
			check(t, incs[1], second)
			if incs[1].Winner.DNS.ID != 0x2222 || incs[1].Loser.DNS.ID != 0x3333 {
				t.Errorf("dns ids W %#x L %#x", incs[1].Winner.DNS.ID, incs[1].Loser.DNS.ID)
			}
		})
	}
}

// --all mode, the winner's CT_IN lost: its NAT and confirm events still
// make a record; only its birth (and so the window) is unknown.
func TestMissingWinnerBirth(t *testing.T) {
	sc := scenarioR1Merged()
	var evs []event.Event
	for _, ev := range sc.all {
		if !(ev.Kind == event.CTIn && ev.CT == ctW) {
			evs = append(evs, ev)
		}
	}
	w := sc.want
	w.window = 0
	inc := only(t, feed(t, New(Options{}), evs))
	check(t, inc, w)
	if inc.Winner.Born != 0 || len(inc.Winner.Timeline) != 3 || inc.Winner.DNS.Valid || inc.Winner.TID != 4242 {
		t.Errorf("winner without birth: %+v", inc.Winner)
	}
}
