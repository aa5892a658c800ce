// Package render turns what ctprobe sees into output for people and for
// programs: one line per probe event (trace --all), a block per incident
// (the default), a summary on exit and every --interval, and the same four
// things as JSON lines (-o json, schema in docs/json-schema.md).
//
// Text and JSON implement Renderer. Both are safe for concurrent use (a
// summary ticker may write while the event loop does) and reuse one buffer,
// so rendering an event line does not allocate. They hold event lines back
// until Flush, so that a busy --all trace writes many with one system call.
package render

import (
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/loss"
	"github.com/ctprobe/ctprobe/tracer/plan"
	"github.com/ctprobe/ctprobe/tracer/summary"
)

// SchemaVersion is the value of "schema" on every JSON line. It changes only
// when a documented field changes meaning or type or disappears; adding a
// field or a "kind" does not change it. 2: one spelling per value (a
// confirm's result is spelled as an incident's outcome), a window of 0 ns
// is 0, timeline stages and probes carry their keys with null rather than
// leave them out (docs/json-schema.md, Changes).
const SchemaVersion = 2

// Clock converts kernel monotonic time (bpf_ktime_get_ns) to wall-clock time.
type Clock struct {
	// BootTimeUnixNano is the wall-clock time of ktime 0, in ns since the
	// Unix epoch (capture.Header.BootTimeUnixNano).
	BootTimeUnixNano int64
	// Location is the time zone of printed times; nil means time.Local.
	Location *time.Location
}

// Time is the wall-clock time of a kernel timestamp.
func (c Clock) Time(ktime uint64) time.Time {
	return c.in(time.Unix(0, c.BootTimeUnixNano+int64(ktime)))
}

func (c Clock) in(t time.Time) time.Time {
	if c.Location == nil {
		return t.In(time.Local)
	}
	return t.In(c.Location)
}

// Options control text output. The zero value prints local time without
// colour and takes the time of plan, lost and warning lines from time.Now.
type Options struct {
	Clock Clock
	// Color turns ANSI colour on. Set it to !noColor && IsTerminal(fd).
	Color bool
	// Now stamps lines that carry no kernel time (plan, lost, warning):
	// nil means time.Now; a report stamps them with the capture's time.
	Now func() time.Time
	// Node names the node every line comes from, in a report of several
	// nodes' captures (its hostname); "" prints no node.
	Node string
}

func (o *Options) now() time.Time {
	if o.Now != nil {
		return o.Clock.in(o.Now())
	}
	return o.Clock.in(time.Now())
}

// IsTerminal reports whether fd is a terminal (os.Stdout.Fd()).
func IsTerminal(fd uintptr) bool {
	_, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
	return err == nil
}

// Header says what a stream of output is about: which ctprobe traced
// which kernel on which node, in which mode, from when. A live trace and
// the report of its capture start with the same one.
type Header struct {
	Version  string // the ctprobe that traced
	Kernel   string // its kernel's release
	Hostname string
	Mode     string // the trace mode's name (mode.Mode.CaptureName)
	Start    time.Time
	// Capture: the stream is the report of a capture, not a live trace.
	Capture bool
}

// Renderer writes ctprobe's output in one format.
type Renderer interface {
	// Header starts a stream, before its plan.
	Header(h *Header) error
	// Event writes one probe event (trace --all).
	Event(ev *event.Event) error
	// Incident writes one clash between a winner and a loser.
	Incident(inc *incident.Incident) error
	// Finding writes one fault that is not a clash (incident.Finding).
	Finding(f *incident.Finding) error
	// Lost reports records that never arrived.
	Lost(l loss.Count) error
	// Summary writes an interval or final summary.
	Summary(s *summary.Summary) error
	// Plan writes the attach plan.
	Plan(p []plan.Entry) error
	// Probes writes what `ctprobe probes` found: the kernel and the plan.
	Probes(p *Probes) error
	// Warning writes a message for the user (e.g. a probe that could not
	// attach, a netns whose counters cannot be read).
	Warning(msg string) error
	// Flush writes out the event lines that Event held back. Event may
	// hold lines (up to a bound), to write many with one system call;
	// every other method writes them out before its own output. A live
	// trace flushes whenever it is about to wait for records.
	Flush() error
}

// Discard renders nothing (a replay that is counted, not read), so
// that no time goes into formatting what nobody reads.
type Discard struct{}

func (Discard) Header(*Header) error              { return nil }
func (Discard) Event(*event.Event) error          { return nil }
func (Discard) Incident(*incident.Incident) error { return nil }
func (Discard) Finding(*incident.Finding) error   { return nil }
func (Discard) Lost(loss.Count) error             { return nil }
func (Discard) Summary(*summary.Summary) error    { return nil }
func (Discard) Plan([]plan.Entry) error           { return nil }
func (Discard) Probes(*Probes) error              { return nil }
func (Discard) Warning(string) error              { return nil }
func (Discard) Flush() error                      { return nil }

// New returns the renderer for format "text" or "json". JSON output never
// has colour and ignores opt.Color.
func New(w io.Writer, format string, opt Options) (Renderer, error) {
	switch format {
	case "text", "":
		return NewText(w, opt), nil
	case "json":
		return NewJSON(w, opt), nil
	case "pcapng":
		return NewPCAPNG(w, opt), nil
	}
	return nil, fmt.Errorf("render: unknown output format %q (want text, json or pcapng)", format)
}

// sink is the output buffer and lock shared by Text and JSON. Event lines
// are held in it (hold) until Flush or until holdMax bytes wait; any other
// output is written at once (write), after the lines held before it.
type sink struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

// holdMax bounds the bytes of event lines held back: about 150 text lines.
// Past it they are written without waiting for Flush.
const holdMax = 32 << 10

// hold appends output to the held lines.
func (s *sink) hold(fill func([]byte) []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = fill(s.buf)
	if len(s.buf) < holdMax {
		return nil
	}
	return s.flushLocked()
}

// write appends output to the held lines and writes them all.
func (s *sink) write(fill func([]byte) []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = fill(s.buf)
	return s.flushLocked()
}

// Flush writes the held lines.
func (s *sink) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flushLocked()
}

func (s *sink) flushLocked() error {
	if len(s.buf) == 0 {
		return nil
	}
	_, err := s.w.Write(s.buf)
	s.buf = s.buf[:0]
	if cap(s.buf) > 1<<20 {
		s.buf = nil // do not keep a huge summary's buffer forever
	}
	return err
}

// Names.

// HookName names an NF_INET_* hook number: PREROUTING, INPUT, FORWARD,
// LOCAL_OUT, POSTROUTING; "-" for 0xff (not a CT_IN event).
func HookName(h uint8) string {
	switch h {
	case event.HookPreRouting:
		return "PREROUTING"
	case event.HookLocalIn:
		return "INPUT"
	case event.HookForward:
		return "FORWARD"
	case event.HookLocalOut:
		return "LOCAL_OUT"
	case event.HookPostRouting:
		return "POSTROUTING"
	case event.HookNone:
		return "-"
	}
	return "hook" + strconv.Itoa(int(h))
}

// ctinfoName names an enum ip_conntrack_info value.
func ctinfoName(ci uint8) string {
	switch ci {
	case event.CTEstablished:
		return "established"
	case event.CTRelated:
		return "related"
	case event.CTNew:
		return "new"
	case event.CTEstablishedReply:
		return "established-reply"
	case event.CTRelatedReply:
		return "related-reply"
	case event.CTUntracked:
		return "untracked"
	}
	return "ctinfo" + strconv.Itoa(int(ci))
}

// manipNames names a NAT manip type (event.ManipSrc, event.ManipDst) in
// text and in JSON.
func manipNames(m int) (text, json string) {
	if m == event.ManipDst {
		return "DST", "dst"
	}
	return "SRC", "src"
}

// statusNames are the IPS_* bits by number (include/uapi/linux/netfilter/
// nf_conntrack_common.h). Bit 12 is IPS_UNTRACKED on a template and
// IPS_NAT_CLASH on a real ct; ctprobe only sees real cts.
var statusNames = [...]string{
	"expected", "seen_reply", "assured", "confirmed", "src_nat", "dst_nat",
	"seq_adjust", "src_nat_done", "dst_nat_done", "dying", "fixed_timeout",
	"template", "nat_clash", "helper", "offload", "hw_offload",
}

// flagNames are the event.Flags bits by number.
var flagNames = [...]string{"new", "sock", "history", "nat_gut", "nat_changed", "winner", "softirq_key", "origin", "lookup", "local"}

// The lists of an event's "status_names" and "flags".
var (
	statusListsJSON = newJSONBitLists(statusNames[:])
	flagListsJSON   = newJSONBitLists(flagNames[:])
)

func verdictName(v uint32) string {
	switch v {
	case event.VerdictDrop:
		return "DROP"
	case event.VerdictAccept:
		return "ACCEPT"
	}
	return "verdict" + strconv.FormatUint(uint64(v), 10)
}

// confirmResult says what a CONFIRM event did, as incident.OutcomeOf
// decides it: "inserted", "merged" (the skb now carries another ct),
// "nat-clash" (inserted reply-only) or "dropped", spelled as the incident
// outcome (incident.Outcome) that the same confirm ends an incident with.
func confirmResult(ev *event.Event) string {
	o, race := incident.OutcomeOf(ev.Verdict, ev.CT, ev.OtherCT, ev.Status)
	switch {
	case !race && ev.Verdict == event.VerdictAccept:
		return "inserted"
	case o == incident.OutcomeDropped && ev.Verdict == event.VerdictDrop,
		o == incident.OutcomeMerged, o == incident.OutcomeNATClash:
		return string(o)
	}
	return "other"
}

// ANSI colour.
const (
	ansiReset   = "\x1b[0m"
	ansiBold    = "\x1b[1m"
	ansiRed     = "\x1b[31m"
	ansiGreen   = "\x1b[32m"
	ansiYellow  = "\x1b[33m"
	ansiMagenta = "\x1b[35m"
	ansiCyan    = "\x1b[36m"
	ansiDim     = "\x1b[2m"
)

func outcomeColor(o incident.Outcome) string {
	switch o {
	case incident.OutcomeDropped:
		return ansiRed
	case incident.OutcomeNATClash, incident.OutcomePortMoved:
		return ansiYellow
	case incident.OutcomeMerged:
		return ansiGreen
	}
	return ansiBold
}
