package incident

import (
	"testing"

	"github.com/ctprobe/ctprobe/tracer/event"
)

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

// --all, as Debian sid's kernel under QEMU delivered a race: the reader
// idled after the clash record (Advance moved the clock 300 ms on), then
// the loser's confirm came, and its winner's insert (confirmed before the
// clash, on another CPU) just after it. The incident waits the reorder
// window from where the stream was when the confirm came, so it has the
// winner's insert, as a replay that never idled finds it.
func TestAllModeLoserConfirmAfterIdle(t *testing.T) {
	evs := allMode(scenarioR3NATClash().replay) // winner's insert, clash, loser's confirm
	w, clash, conf := evs[0], evs[1], evs[2]
	c := New(Options{})
	if incs := c.Add(&clash); len(incs) != 0 {
		t.Fatalf("incident at the clash: %+v", incs)
	}
	idle := conf.Time + 15*uint64(DefaultReorderWindow)
	if incs := c.Advance(idle); len(incs) != 0 {
		t.Fatalf("incident at an idle before the loser's confirm: %+v", incs)
	}
	if incs := c.Add(&conf); len(incs) != 0 {
		t.Fatalf("the loser's confirm, read after an idle, completed its incident at once, before its winner's insert could come (winner timeline %v)", incs[0].Winner.Timeline)
	}
	if incs := c.Add(&w); len(incs) != 0 {
		t.Fatalf("incident at the winner's insert: %+v", incs)
	}
	if incs := c.Advance(idle + uint64(DefaultReorderWindow) - 1); len(incs) != 0 {
		t.Fatalf("incident 1 ns before the reorder window ended")
	}
	inc := only(t, c.Advance(idle+uint64(DefaultReorderWindow)))
	if st := inc.Winner.Timeline; len(st) != 1 || st[0].Kind != event.Confirm || st[0].Time != w.Time || inc.Winner.PID != w.PID {
		t.Errorf("winner timeline %+v pid %d, want its insert at %d by pid %d", st, inc.Winner.PID, w.Time, w.PID)
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

// Quiet is false from a clash to its loser's confirm, and while an
// incident waits for late events; true again once each is done.
func TestQuiet(t *testing.T) {
	sc := scenarioR3NATClash()
	for _, m := range []struct {
		name string
		evs  []event.Event
	}{{"default mode", defaultMode(sc.replay)}, {"--all", allMode(sc.replay)}} {
		t.Run(m.name, func(t *testing.T) {
			c := New(Options{ReorderWindow: 5000})
			if !c.Quiet() {
				t.Fatal("a new correlator is not quiet")
			}
			var incs []Incident
			for i := range m.evs {
				ev := &m.evs[i]
				incs = append(incs, c.Add(ev)...)
				clash := ev.Kind == event.Clash
				if clash && c.Quiet() {
					t.Errorf("event %d: quiet between a clash and its loser's confirm", i)
				}
				if !clash && len(incs) == 0 && i < len(m.evs)-1 && !c.Quiet() {
					t.Errorf("event %d (%v): not quiet before any clash", i, ev.Kind)
				}
			}
			if len(incs) == 0 {
				if c.Quiet() {
					t.Error("quiet while the incident waits for late events")
				}
				incs = c.Advance(m.evs[len(m.evs)-1].Time + 5000)
			}
			if inc := only(t, incs); inc.Race != sc.want.race || inc.Outcome != sc.want.outcome {
				t.Errorf("race %d %s, want %d %s", inc.Race, inc.Outcome, sc.want.race, sc.want.outcome)
			}
			if !c.Quiet() {
				t.Error("not quiet after the incident")
			}
		})
	}
}
