package render

import (
	"io"
	"unicode/utf8"

	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/loss"
	"github.com/ctprobe/ctprobe/tracer/plan"
	"github.com/ctprobe/ctprobe/tracer/summary"
)

// Text writes the human-readable format.
type Text struct {
	sink
	opt    Options
	second wallSecond // of the last event line
}

// NewText returns a text renderer writing to w.
func NewText(w io.Writer, opt Options) *Text {
	return &Text{sink: sink{w: w}, opt: opt}
}

// Event writes one event line (held until Flush).
func (t *Text) Event(ev *event.Event) error {
	return t.hold(func(b []byte) []byte { return appendEvent(appendNode(b, t.opt.Node), ev, &t.opt, &t.second) })
}

// Incident writes an incident block followed by a blank line.
func (t *Text) Incident(inc *incident.Incident) error {
	return t.write(func(b []byte) []byte { return appendIncident(appendNode(b, t.opt.Node), inc, &t.opt) })
}

// Lost writes "12:00:03.123456 lost 12 records: ring buffer full (ringbuf, cpu 1)".
func (t *Text) Lost(l loss.Count) error {
	return t.write(func(b []byte) []byte {
		b = appendClock(appendNode(b, t.opt.Node), t.opt.now())
		b = append(b, ' ')
		b = appendColored(b, t.opt.Color, ansiRed, "lost", 0)
		b = append(b, ' ')
		b = appendUint(b, l.Count)
		if l.Count == 1 {
			b = append(b, " record: "...)
		} else {
			b = append(b, " records: "...)
		}
		b = appendEscaped(b, l.Kind.Meaning())
		b = append(b, " ("...)
		b = appendEscaped(b, string(l.Kind))
		if l.CPU >= 0 {
			b = append(b, ", cpu "...)
			b = appendUint(b, uint64(l.CPU))
		}
		return append(b, ")\n"...)
	})
}

// appendNode writes "[node-a] " before a line of a report of several
// nodes; nothing when node is "".
func appendNode(dst []byte, node string) []byte {
	if node == "" {
		return dst
	}
	dst = append(dst, '[')
	dst = appendEscaped(dst, node)
	return append(dst, "] "...)
}

// Header writes nothing: a person reads the plan first, and knows which
// node they traced.
func (t *Text) Header(*Header) error { return nil }

// Warning writes "12:00:03.123456 warning: msg".
func (t *Text) Warning(msg string) error {
	return t.write(func(b []byte) []byte {
		b = appendClock(appendNode(b, t.opt.Node), t.opt.now())
		b = append(b, ' ')
		b = appendColored(b, t.opt.Color, ansiYellow, "warning:", 0)
		b = append(b, ' ')
		b = appendEscaped(b, msg)
		return append(b, '\n')
	})
}

// Plan writes the attach plan as a table. A capture's plan comes from
// another machine: its cells are escaped before they are measured.
func (t *Text) Plan(p []plan.Entry) error {
	return t.write(func(b []byte) []byte {
		rows := [][5]string{{"point", "function", "mode", "status", "reason"}}
		for _, e := range p {
			rows = append(rows, [5]string{Escape(e.Point), Escape(e.Function), Escape(string(e.Attach)), Escape(string(e.Status)), Escape(e.Reason)})
		}
		var w [4]int
		for _, c := range rows {
			for i := range w {
				w[i] = max(w[i], utf8.RuneCountInString(c[i]))
			}
		}
		b = append(appendNode(b, t.opt.Node), "attach plan\n"...)
		for i, c := range rows {
			color := ""
			if i > 0 {
				color = ansiGreen
				if p[i-1].Status != plan.Attached {
					color = ansiYellow
				}
			}
			b = append(b, "  "...)
			for i := range 3 {
				b = appendPadded(b, c[i], w[i]+2)
			}
			if c[4] == "" {
				b = appendColored(b, t.opt.Color, color, c[3], 0)
			} else {
				b = appendColored(b, t.opt.Color, color, c[3], w[3]+2)
				b = append(b, c[4]...)
			}
			b = append(b, '\n')
		}
		return b
	})
}

// Summary writes a summary block.
func (t *Text) Summary(s *summary.Summary) error {
	return t.write(func(b []byte) []byte { return appendSummaryText(b, s, &t.opt) })
}

// Column widths of event lines. A wider value pushes the rest of its line
// right; it is never cut.
const (
	wCPU   = 6  // "cpu127"
	wTask  = 24 // "ctlab[4242/4243]"
	wNetns = 13 // "ns:4026532201"
	wKind  = 7  // "confirm"
	wHook  = 11 // "POSTROUTING"
)

// appendField appends a labelled number padded to width, then a space
// ("cpu1   ", "ns:4026532201 "). Its labels and digits are ASCII, a
// column a byte: counting the runes of a line's padded fields was a
// tenth of its rendering.
func appendField(dst []byte, label string, v uint64, width int) []byte {
	start := len(dst)
	dst = append(dst, label...)
	dst = appendUint(dst, v)
	dst = appendSpaces(dst, width-(len(dst)-start))
	return append(dst, ' ')
}

// appendKind appends the probe point's name, padded, then a space; a clash
// stands out in colour.
func appendKind(dst []byte, color bool, k event.Kind) []byte {
	kc := ""
	if k == event.Clash {
		kc = ansiYellow
	}
	dst = appendColored(dst, color, kc, k.String(), wKind)
	return append(dst, ' ')
}

// AppendEvent appends the text line of one event, newline included:
//
//	12:00:03.123456 cpu1   ctlab[4242/4243]         ns:4026532201 ct_in   LOCAL_OUT   udp 10.244.1.2:41000->10.96.0.10:53 reply 10.96.0.10:53->10.244.1.2:41000 new ct=0xffff888004a1b200
//
// It does not allocate when dst has room.
func AppendEvent(dst []byte, ev *event.Event, opt *Options) []byte {
	var second wallSecond
	return appendEvent(dst, ev, opt, &second)
}

// appendEvent is AppendEvent with the renderer's last second.
func appendEvent(dst []byte, ev *event.Event, opt *Options, second *wallSecond) []byte {
	color := opt.Color
	dst = second.appendClock(dst, opt.Clock.Time(ev.Time))
	dst = append(dst, ' ')

	dst = appendField(dst, "cpu", uint64(ev.CPU), wCPU)
	start := len(dst)
	dst = appendTask(dst, commBytes(ev), ev.PID, ev.TID, ev.Flags&event.FlagSoftirqKey != 0)
	dst = pad(dst, start, wTask)
	dst = append(dst, ' ')

	dst = appendField(dst, "ns:", uint64(ev.Netns), wNetns)
	dst = appendKind(dst, color, ev.Kind)

	switch ev.Kind {
	case event.CTIn:
		dst = appendPadded(dst, HookName(ev.Hook), wHook)
		dst = append(dst, ' ')
		dst = appendTuple(dst, ev.Orig)
		dst = append(dst, " reply "...)
		dst = appendTupleEnds(dst, ev.Reply)
		dst = append(dst, ' ')
		if ev.Flags&event.FlagNew != 0 {
			dst = append(dst, "new"...)
		} else if ev.CTInfo == event.CTNew {
			dst = append(dst, "new-confirmed"...)
		} else {
			dst = append(dst, ctinfoName(ev.CTInfo)...)
		}
		if ev.Verdict != event.VerdictAccept {
			dst = append(dst, ' ')
			dst = appendColored(dst, color, ansiRed, verdictName(ev.Verdict), 0)
		}
	case event.NAT:
		manip, _ := manipNames(int(ev.Aux))
		dst = appendPadded(dst, manip, wHook)
		dst = append(dst, ' ')
		dst = appendTuple(dst, ev.Orig)
		if ev.Flags&event.FlagNATGUT != 0 {
			// get_unique_tuple: both tuples are in ORIGINAL direction.
			dst = append(dst, " tuple "...)
		} else {
			dst = append(dst, " reply "...)
		}
		dst = appendTupleEnds(dst, ev.Before)
		dst = append(dst, " => "...)
		dst = appendTupleEnds(dst, ev.Reply)
		if ev.Flags&event.FlagNATChanged != 0 {
			dst = append(dst, " changed"...)
		} else {
			dst = append(dst, " unchanged"...)
		}
		if ev.Flags&event.FlagNATGUT != 0 {
			dst = append(dst, " gut"...)
		}
		dst = appendRange(dst, &ev.Range)
	case event.Clash:
		dst = append(dst, "winner="...)
		dst = appendHex(dst, ev.OtherCT)
		if ev.Aux == 1 {
			dst = append(dst, " dir=reply "...)
		} else {
			dst = append(dst, " dir=orig "...)
		}
		dst = appendTuple(dst, ev.Orig)
		dst = append(dst, " reply "...)
		dst = appendTupleEnds(dst, ev.Reply)
	case event.Confirm:
		if ev.Verdict == event.VerdictDrop {
			dst = appendColored(dst, color, ansiRed, "DROP", 0)
		} else {
			dst = append(dst, verdictName(ev.Verdict)...)
			dst = append(dst, ' ')
			switch confirmResult(ev) {
			case string(incident.OutcomeMerged):
				if color {
					dst = append(dst, ansiGreen...)
				}
				dst = append(dst, "merged-into="...)
				dst = appendHex(dst, ev.OtherCT)
				if color {
					dst = append(dst, ansiReset...)
				}
			case string(incident.OutcomeNATClash):
				dst = appendColored(dst, color, ansiYellow, "NAT_CLASH", 0)
			default:
				dst = append(dst, "inserted"...)
			}
		}
		dst = append(dst, ' ')
		dst = appendTuple(dst, ev.Orig)
		dst = append(dst, " reply "...)
		dst = appendTupleEnds(dst, ev.Reply)
	}
	dst = append(dst, " ct="...)
	dst = appendHex(dst, ev.CT)
	if ev.Zone != 0 {
		dst = append(dst, " zone="...)
		dst = appendUint(dst, uint64(ev.Zone))
	}
	if ev.Mark != 0 {
		dst = append(dst, " mark="...)
		dst = appendHex(dst, uint64(ev.Mark))
	}
	if ev.Flags&event.FlagSock != 0 {
		dst = append(dst, " cookie="...)
		dst = appendHex(dst, ev.Sock.Cookie)
		dst = append(dst, " ino="...)
		dst = appendUint(dst, uint64(ev.Sock.Inode))
	}
	if ev.Flags&event.FlagHistory != 0 {
		if ev.Flags&event.FlagWinner != 0 {
			dst = append(dst, " history-winner"...)
		} else {
			dst = append(dst, " history"...)
		}
	}
	if ev.Kind == event.CTIn && ev.PayloadLen > 0 {
		dst = appendDNSText(dst, ev.Payload[:min(int(ev.PayloadLen), len(ev.Payload))])
	}
	return append(dst, '\n')
}

// appendRange writes what a NAT rule asked for, when it asked for anything:
// " range=10.244.2.1-10.244.2.2 ports=1024-65535 random-fully".
func appendRange(dst []byte, r *event.NATRange) []byte {
	if r.Flags&event.RangeMapIPs != 0 && r.MinAddr.IsValid() {
		dst = append(dst, " range="...)
		dst = r.MinAddr.AppendTo(dst)
		if r.MaxAddr != r.MinAddr && r.MaxAddr.IsValid() {
			dst = append(dst, '-')
			dst = r.MaxAddr.AppendTo(dst)
		}
	}
	if r.Flags&event.RangeProtoSpecified != 0 {
		dst = append(dst, " ports="...)
		dst = appendUint(dst, uint64(r.MinPort))
		if r.MaxPort != r.MinPort {
			dst = append(dst, '-')
			dst = appendUint(dst, uint64(r.MaxPort))
		}
	}
	for _, f := range rangeFlagNames {
		if r.Flags&f.bit != 0 {
			dst = append(dst, ' ')
			dst = append(dst, f.text...)
		}
	}
	return dst
}

var rangeFlagNames = [...]struct {
	bit  uint32
	text string
}{
	{event.RangeProtoRandom, "random"},
	{event.RangeProtoRandomFull, "random-fully"},
	{event.RangePersistent, "persistent"},
	{event.RangeProtoOffset, "offset"},
	{event.RangeNetmap, "netmap"},
}
