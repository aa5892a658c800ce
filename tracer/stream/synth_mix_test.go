package stream

import (
	"testing"

	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/stream/streamtest"
)

// The synthetic mixes are what the benchmarks claim they are: the
// correlator finds exactly the races each holds, with the right type and
// outcome, and every event fits its ct's generation.
func TestSynthMix(t *testing.T) {
	t.Run("all-timeline", func(t *testing.T) {
		s := streamtest.BusyCapture(t)
		total := len(s.Records)
		if s.Kinds[event.Clash] == 0 || 4*s.New < total/2 || s.Kinds[event.CTIn]-s.New < total/5 {
			t.Fatalf("not the intended mix")
		}
		checkMix(t, s)
	})
	t.Run("all", func(t *testing.T) {
		s := streamtest.AllCapture(t)
		var dns int
		var ev event.Event
		for _, r := range s.Records {
			if err := event.Decode(r, &ev); err != nil {
				t.Fatal(err)
			}
			if ev.Kind == event.Confirm && ev.PayloadLen > 0 {
				dns++
			}
		}
		if s.Kinds[event.Clash] == 0 || s.Kinds[event.CTIn]+s.Kinds[event.NAT] != 0 || 3*dns < s.Kinds[event.Confirm] {
			t.Fatalf("not the intended mix: %d confirms with a DNS message", dns)
		}
		checkMix(t, s)
	})
}

func checkMix(t *testing.T, s *streamtest.Capture) {
	t.Logf("%d events: ct_in %d (%d new), nat %d, clash %d, confirm %d; races %v; capture %d bytes",
		len(s.Records), s.Kinds[event.CTIn], s.New, s.Kinds[event.NAT], s.Kinds[event.Clash], s.Kinds[event.Confirm], s.Races, len(s.File))
	want := map[incident.RaceType]incident.Outcome{
		incident.RaceIdentical: incident.OutcomeMerged,
		incident.RaceEndpoints: incident.OutcomeNATClash,
		incident.RaceSNATPort:  incident.OutcomeDropped,
	}
	records := s.CopyRecords()
	c := incident.New(incident.Options{})
	var ev event.Event
	// Twice, the second time with the ct pointers reused at later times.
	for pass := range 2 {
		got := map[incident.RaceType]int{}
		check := func(incs []incident.Incident) {
			for _, inc := range incs {
				got[inc.Race]++
				if want[inc.Race] != inc.Outcome || !inc.HasWinner || inc.Loser.Timeline == nil {
					t.Errorf("pass %d: race %d %s winner %v: %s", pass, inc.Race, inc.Outcome, inc.HasWinner, inc.Reason)
				}
			}
		}
		for _, r := range records {
			if err := event.Decode(r, &ev); err != nil {
				t.Fatal(err)
			}
			check(c.Add(&ev))
		}
		if pass == 1 {
			check(c.Flush())
		} else {
			check(c.Advance(ev.Time + uint64(incident.DefaultReorderWindow)))
			s.Advance(records)
		}
		for r, n := range s.Races {
			if got[r] != n {
				t.Errorf("pass %d: %d incidents of race %d, want %d (all: %v)", pass, got[r], r, n, got)
			}
		}
	}
	st := c.Stats()
	if st.Stale != 0 || st.Unknown != 0 {
		t.Errorf("stats %+v", st)
	}
	if st.Evicted == 0 {
		t.Errorf("the mix never filled the correlator (%+v): not a steady state", st)
	}
}
