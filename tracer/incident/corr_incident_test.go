package incident

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ctprobe/ctprobe/tracer/event"
)

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
