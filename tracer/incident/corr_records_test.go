package incident

import (
	"testing"

	"github.com/ctprobe/ctprobe/tracer/event"
)

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
