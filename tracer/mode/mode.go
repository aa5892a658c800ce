// Package mode defines the trace modes: what a trace follows and prints,
// and therefore which probe points it needs, which BPF pipeline runs and
// how a capture names it. The BPF side mirrors these predicates in
// bpf/mode.bpf.h; nothing else decides them.
package mode

// Mode is one of the four trace modes.
type Mode uint8

const (
	// Default probes only the clash path: a packet that does not clash
	// costs nothing; incidents name both packets' tuples.
	Default Mode = iota
	// All also sends one record per new ct at confirm's exit (--all).
	All
	// Timeline keeps each new ct's history in the kernel and sends it when
	// the ct clashes: both packets' stages and senders (--timeline).
	Timeline
	// AllTimeline streams every event of every probe point (--all --timeline).
	AllTimeline
)

// Of is the mode of the --all and --timeline flags.
func Of(all, timeline bool) Mode {
	switch {
	case all && timeline:
		return AllTimeline
	case all:
		return All
	case timeline:
		return Timeline
	}
	return Default
}

// PrintsEvents: every record is printed as an event line (--all).
func (m Mode) PrintsEvents() bool { return m == All || m == AllTimeline }

// FollowsFlows: every new ct is followed through every probe point
// (ct_in, NAT, confirm), with or without streaming (--timeline).
func (m Mode) FollowsFlows() bool { return m == Timeline || m == AllTimeline }

// StreamConfirms is the BPF global stream_confirms: one record per new ct
// at confirm's exit, besides the clash pairs.
func (m Mode) StreamConfirms() bool { return m == All }

// StreamAll is the BPF global stream_all: every event of every point.
func (m Mode) StreamAll() bool { return m == AllTimeline }

// KeepHistory is the BPF global keep_history: each new ct's history stays
// in the kernel, replayed at a clash.
func (m Mode) KeepHistory() bool { return m == Timeline }

// ClashPathOnly: only the clash path (and, for All, confirm's exit) is
// probed; nothing runs for a packet that does not clash.
func (m Mode) ClashPathOnly() bool { return m == Default || m == All }

// captureNames are the modes' names in capture headers (Header.Mode), a
// part of the format.
var captureNames = [...]string{Default: "incidents", All: "all", Timeline: "timeline", AllTimeline: "all+timeline"}

// CaptureName is the mode's name in a capture header.
func (m Mode) CaptureName() string { return captureNames[m] }

// String is the mode's capture name.
func (m Mode) String() string { return m.CaptureName() }

// FromCapture is the mode a capture header names; false for a name this
// version does not know.
func FromCapture(name string) (Mode, bool) {
	for m, n := range captureNames {
		if n == name {
			return Mode(m), true
		}
	}
	return Default, false
}
