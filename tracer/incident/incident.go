// Package incident pairs the loser and the winner of every conntrack
// insertion clash into an Incident and names the race (docs/kernel-notes.md,
// The race types).
// It is the only place that classifies races.
package incident

import (
	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/names"
)

// Stage is one probe event in a packet's timeline.
type Stage struct {
	Kind   event.Kind
	Time   uint64 // kernel monotonic ns
	CPU    uint32
	Hook   uint8       // CT_IN
	Manip  int         // NAT: event.ManipSrc or event.ManipDst; -1 otherwise
	Change bool        // NAT: the binding changed the tuple
	Before event.Tuple // NAT: reply before; CT_IN/CONFIRM: the ct's ORIGINAL tuple; CLASH: the winner's ORIGINAL
	After  event.Tuple // NAT: reply after; CT_IN/CONFIRM: the ct's reply tuple; CLASH: the winner's REPLY
	Result uint32      // CONFIRM: verdict
}

// DNSQuery is the DNS question a UDP packet to or from port 53 carried.
type DNSQuery struct {
	ID    uint16
	Type  uint16 // 1 A, 28 AAAA, ...
	Name  string
	Valid bool
	// Response: the QR bit was set (a reply, not a query). Truncated: the
	// captured bytes ended inside the question, so Name is a prefix and
	// Type may be 0.
	Response  bool
	Truncated bool
}

// Packet is one side of a clash: the packet whose ct won or lost.
type Packet struct {
	CT       uint64
	Comm     string
	PID, TID uint32
	CPU      uint32
	// Task: Comm/PID/TID are the sending task (CT_IN at LOCAL_OUT in process
	// context, or joined from where the skb was sent: event.FlagOrigin).
	// Otherwise they are whatever ran the softirq (incidental).
	Task      bool
	Netns     uint32
	Zone      uint16
	Sock      event.Socket
	HasSock   bool
	Orig      event.Tuple // ORIGINAL tuple (before NAT)
	Reply     event.Tuple // REPLY tuple after NAT
	ReplyPre  event.Tuple // REPLY tuple before NAT (the inverted original)
	NATChange bool        // a NAT binding changed the reply tuple
	PortMoved bool        // SRC NAT moved the source port
	DNS       DNSQuery
	Timeline  []Stage
	Born      uint64 // time of CT_IN (0 when unseen)
	// Names are the pod and container that sent the packet and its netns's
	// name, filled in by the pipeline (stream.Processor) when it has a
	// names.Source; the correlator leaves them empty.
	Names names.Names
}

// Incident is one clash at __nf_conntrack_confirm between a loser and the
// confirmed winner that already held its tuple.
type Incident struct {
	Time    uint64 // the loser's confirm
	Race    RaceType
	Reason  string // why Race is what it is (always set for RaceUnknown)
	Outcome Outcome
	// Mitigation is what removes or settles this race, given its outcome
	// and what NAT did (RaceType.Mitigation).
	Mitigation string
	Loser      Packet
	Winner     Packet
	HasWinner  bool
	// Window is the time between the two packets' conntrack entry (ns);
	// 0 when either is unknown (KnownWindow tells).
	Window uint64
	// Direction of the winner's hash node that matched the loser's tuple
	// at confirm: 0 ORIGINAL, 1 REPLY, -1 when no clash event was seen.
	ClashDir int
}

// KnownWindow is Window and whether it is known: both packets were seen
// entering conntrack. Two packets may enter in the same nanosecond, on two
// CPUs: a window of 0 is then a window, not an unknown one.
func (inc *Incident) KnownWindow() (uint64, bool) {
	return inc.Window, inc.HasWinner && inc.Loser.Born != 0 && inc.Winner.Born != 0
}
