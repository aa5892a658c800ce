package summary

import (
	"net/netip"
	"testing"
	"time"

	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/incident"
)

// Each breakdown keeps MaxRows rows; incidents of later keys are counted
// as unlisted, not dropped, and those of unlisted namespaces are outside
// the comparison with the kernel's counters.
func TestTallyRowsBounded(t *testing.T) {
	tally := NewTally(time.Unix(0, 0))
	const n = MaxRows + 5
	for i := range n {
		inc := incident.Incident{Race: incident.RaceEndpoints, Outcome: incident.OutcomeDropped, Loser: incident.Packet{
			Task: true, Comm: "curl", PID: uint32(1000 + i), Netns: uint32(4026532000 + i),
			Orig: event.Tuple{Proto: 17, Dst: netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}), DstPort: 53},
		}}
		tally.Add(&inc)
		tally.Add(&inc) // a second incident of a listed key stays in its row
	}
	s := tally.Summary(time.Unix(1, 0), nil, true)
	if s.Incidents != 2*n || len(s.ByProcess) != MaxRows || len(s.ByDestination) != MaxRows || len(s.Netns) != MaxRows {
		t.Fatalf("%d incidents, %d processes, %d destinations, %d netns; want %d and %d rows each",
			s.Incidents, len(s.ByProcess), len(s.ByDestination), len(s.Netns), 2*n, MaxRows)
	}
	if want := (Unlisted{Processes: 10, Destinations: 10, Netns: 10}); s.Unlisted != want {
		t.Errorf("unlisted %+v, want %+v", s.Unlisted, want)
	}
	for _, p := range s.ByProcess {
		if p.Count != 2 {
			t.Fatalf("process %d: %d incidents, want 2", p.PID, p.Count)
		}
	}
	if tot := TotalsOf(s); tot.Uncounted != 2*n {
		// No namespace's counters were read: every incident is uncounted,
		// the listed ones and the unlisted ones.
		t.Errorf("uncounted %d, want %d", tot.Uncounted, 2*n)
	}
}
