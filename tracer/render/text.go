package render

import (
	"io"
	"slices"

	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/incident"
)

// Text writes the human-readable format.
type Text struct {
	sink
	opt Options
}

// NewText returns a text renderer writing to w.
func NewText(w io.Writer, opt Options) *Text {
	return &Text{sink: sink{w: w}, opt: opt}
}

// Event writes one event line.
func (t *Text) Event(ev *event.Event) error {
	return t.write(func(b []byte) []byte { return AppendEvent(b, ev, &t.opt) })
}

// Incident writes an incident block followed by a blank line.
func (t *Text) Incident(inc *incident.Incident) error {
	return t.write(func(b []byte) []byte { return appendIncident(b, inc, &t.opt) })
}

// Lost writes "12:00:03.123456 lost 12 records: ring buffer full (ringbuf, cpu 1)".
func (t *Text) Lost(l Lost) error {
	return t.write(func(b []byte) []byte {
		b = appendClock(b, t.opt.now())
		b = append(b, ' ')
		b = appendColored(b, t.opt.Color, ansiRed, "lost", 0)
		b = append(b, ' ')
		b = appendUint(b, l.Count)
		if l.Count == 1 {
			b = append(b, " record: "...)
		} else {
			b = append(b, " records: "...)
		}
		b = append(b, lostMeaning(l.Source)...)
		b = append(b, " ("...)
		b = append(b, l.Source...)
		if l.CPU >= 0 {
			b = append(b, ", cpu "...)
			b = appendUint(b, uint64(l.CPU))
		}
		return append(b, ")\n"...)
	})
}

// Warning writes "12:00:03.123456 warning: msg".
func (t *Text) Warning(msg string) error {
	return t.write(func(b []byte) []byte {
		b = appendClock(b, t.opt.now())
		b = append(b, ' ')
		b = appendColored(b, t.opt.Color, ansiYellow, "warning:", 0)
		b = append(b, ' ')
		b = append(b, msg...)
		return append(b, '\n')
	})
}

// Plan writes the attach plan as a table.
func (t *Text) Plan(p []PlanEntry) error {
	return t.write(func(b []byte) []byte {
		w := [4]int{len("point"), len("function"), len("mode"), len("status")}
		for _, e := range p {
			w[0] = max(w[0], len(e.Point))
			w[1] = max(w[1], len(e.Function))
			w[2] = max(w[2], len(e.Mode))
			w[3] = max(w[3], len(e.Status))
		}
		b = append(b, "attach plan\n"...)
		row := func(b []byte, c [5]string, color string) []byte {
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
			return append(b, '\n')
		}
		b = row(b, [5]string{"point", "function", "mode", "status", "reason"}, "")
		for _, e := range p {
			color := ansiGreen
			if e.Status != "attached" {
				color = ansiYellow
			}
			b = row(b, [5]string{e.Point, e.Function, e.Mode, e.Status, e.Reason}, color)
		}
		return b
	})
}

// Summary writes a summary block (see AppendSummary).
func (t *Text) Summary(s *Summary) error {
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
// ("cpu1   ", "ns:4026532201 ").
func appendField(dst []byte, label string, v uint64, width int) []byte {
	start := len(dst)
	dst = append(dst, label...)
	dst = appendUint(dst, v)
	dst = pad(dst, start, width)
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
// It does not allocate when dst has room, except once for the name of a DNS
// question in a CT_IN payload.
func AppendEvent(dst []byte, ev *event.Event, opt *Options) []byte {
	color := opt.Color
	dst = appendClock(dst, opt.Clock.Time(ev.Time))
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
			case "merged":
				if color {
					dst = append(dst, ansiGreen...)
				}
				dst = append(dst, "merged-into="...)
				dst = appendHex(dst, ev.OtherCT)
				if color {
					dst = append(dst, ansiReset...)
				}
			case "nat_clash":
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

// Incident blocks.

// stageRow is one line of an incident timeline.
type stageRow struct {
	who    byte // 'W' or 'L'
	pkt    *incident.Packet
	stage  *incident.Stage
	winner bool
}

func timeline(inc *incident.Incident) []stageRow {
	var rows []stageRow
	if inc.HasWinner {
		for i := range inc.Winner.Timeline {
			rows = append(rows, stageRow{'W', &inc.Winner, &inc.Winner.Timeline[i], true})
		}
	}
	for i := range inc.Loser.Timeline {
		rows = append(rows, stageRow{'L', &inc.Loser, &inc.Loser.Timeline[i], false})
	}
	slices.SortStableFunc(rows, func(a, b stageRow) int {
		switch {
		case a.stage.Time < b.stage.Time:
			return -1
		case a.stage.Time > b.stage.Time:
			return 1
		}
		return 0
	})
	return rows
}

// firstTime is the time offsets in an incident count from: its first
// stage, else the earlier packet birth, else the incident itself.
func firstTime(inc *incident.Incident) uint64 {
	t := uint64(0)
	take := func(v uint64) {
		if v != 0 && (t == 0 || v < t) {
			t = v
		}
	}
	for _, p := range []*incident.Packet{&inc.Loser, &inc.Winner} {
		if p == &inc.Winner && !inc.HasWinner {
			continue
		}
		for _, s := range p.Timeline {
			take(s.Time)
		}
	}
	if t == 0 {
		take(inc.Loser.Born)
		if inc.HasWinner {
			take(inc.Winner.Born)
		}
	}
	if t == 0 {
		t = inc.Time
	}
	return t
}

func offsetNS(t, base uint64) uint64 {
	if t < base {
		return 0
	}
	return t - base
}

// dnsFate is what became of the loser's query.
func dnsFate(o incident.Outcome) string {
	switch o {
	case incident.OutcomeMerged:
		return "merged"
	case incident.OutcomeNATClash:
		return "inserted reply-only"
	case incident.OutcomeDropped:
		return "lost (resent after the resolver's timeout, 5 s by default)"
	}
	return string(o)
}

func appendDNSQuery(dst []byte, q *incident.DNSQuery) []byte {
	if !q.Valid {
		return append(dst, '?')
	}
	if q.Type != 0 {
		dst = append(dst, dnsTypeName(q.Type)...)
	} else {
		dst = append(dst, '?')
	}
	dst = append(dst, ' ')
	dst = appendDNSName(dst, q.Name, q.Truncated && q.Type == 0)
	dst = append(dst, " id "...)
	return appendHex(dst, uint64(q.ID))
}

func appendWho(dst []byte, color bool, who byte) []byte {
	c := ansiMagenta
	if who == 'W' {
		c = ansiCyan
	}
	if color {
		dst = append(dst, c...)
		dst = append(dst, who)
		return append(dst, ansiReset...)
	}
	return append(dst, who)
}

// appendPacketTask writes "comm[pid/tid]", or when the task fields are
// incidental (the packet was not seen in the sender's process context)
// "(sender unknown)", or the socket where that alone is known.
func appendPacketTask(dst []byte, p *incident.Packet) []byte {
	if !p.Task {
		if p.HasSock {
			dst = append(dst, "(task unknown, socket cookie "...)
			dst = appendHex(dst, p.Sock.Cookie)
			return append(dst, ')')
		}
		return append(dst, "(sender unknown)"...)
	}
	return appendTask(dst, []byte(p.Comm), p.PID, p.TID, false)
}

// appendIncident writes one incident block:
//
//	12:00:03.123456 race 3 (DNAT chose different endpoints) — nat-clash — pid 4242 ctlab, socket cookie 0x1f inode 12345, netns 4026532201
//	  dns  A lab.example. id 0x1234 ok / AAAA lab.example. id 0x1235 — inserted reply-only
//	  W    ctlab[4242/4243]  ct 0xffff888004a1b300  udp 10.244.1.2:41000->10.96.0.10:53  reply 10.244.2.1:53->10.244.1.2:41000
//	  L    ...
//	        +0.000µs  W cpu0   ct_in   LOCAL_OUT   udp 10.244.1.2:41000->10.96.0.10:53 reply 10.96.0.10:53->10.244.1.2:41000
//	        ...
//	  window 1.500µs between the two packets entering conntrack (W first)
func appendIncident(dst []byte, inc *incident.Incident, opt *Options) []byte {
	color := opt.Color
	L, W := &inc.Loser, &inc.Winner

	// Header.
	dst = appendClock(dst, opt.Clock.Time(inc.Time))
	dst = append(dst, ' ')
	if color {
		dst = append(dst, ansiBold...)
	}
	dst = append(dst, "race "...)
	dst = appendUint(dst, uint64(inc.Race))
	dst = append(dst, " ("...)
	dst = append(dst, RaceName(inc.Race)...)
	if inc.Race == incident.RaceUnknown && inc.Reason != "" {
		dst = append(dst, ": "...)
		dst = append(dst, inc.Reason...)
	}
	dst = append(dst, ')')
	if color {
		dst = append(dst, ansiReset...)
	}
	dst = append(dst, " — "...)
	dst = appendColored(dst, color, outcomeColor(inc.Outcome), string(inc.Outcome), 0)
	if L.Task {
		dst = append(dst, " — pid "...)
		dst = appendUint(dst, uint64(L.PID))
		dst = append(dst, ' ')
		dst = append(dst, L.Comm...)
	} else {
		dst = append(dst, " — sender unknown"...)
	}
	if L.HasSock {
		dst = append(dst, ", socket cookie "...)
		dst = appendHex(dst, L.Sock.Cookie)
		dst = append(dst, " inode "...)
		dst = appendUint(dst, uint64(L.Sock.Inode))
	}
	dst = append(dst, ", netns "...)
	dst = appendUint(dst, uint64(L.Netns))
	if L.Zone != 0 {
		dst = append(dst, " zone "...)
		dst = appendUint(dst, uint64(L.Zone))
	}
	if inc.HasWinner {
		otherTask := W.Task && (!L.Task || W.PID != L.PID)
		if otherTask {
			dst = append(dst, "; winner pid "...)
			dst = appendUint(dst, uint64(W.PID))
			dst = append(dst, ' ')
			dst = append(dst, W.Comm...)
		}
		if W.Netns != L.Netns {
			if otherTask {
				dst = append(dst, ", netns "...)
			} else {
				dst = append(dst, "; winner netns "...)
			}
			dst = appendUint(dst, uint64(W.Netns))
		}
	}
	dst = append(dst, '\n')

	// Why, for classified races (unclassified ones say it in the header).
	if inc.Race != incident.RaceUnknown && inc.Reason != "" {
		dst = append(dst, "  why    "...)
		dst = append(dst, inc.Reason...)
		dst = append(dst, '\n')
	}

	// DNS: winner's query / loser's query and its fate.
	if L.DNS.Valid || (inc.HasWinner && W.DNS.Valid) {
		dst = append(dst, "  dns    "...)
		if inc.HasWinner {
			dst = appendDNSQuery(dst, &W.DNS)
			if W.DNS.Valid {
				dst = append(dst, " ok"...)
			}
			dst = append(dst, " / "...)
		}
		dst = appendDNSQuery(dst, &L.DNS)
		dst = append(dst, " — "...)
		dst = appendColored(dst, color, outcomeColor(inc.Outcome), dnsFate(inc.Outcome), 0)
		dst = append(dst, '\n')
	}

	// One line per packet: task, ct, tuple, final reply.
	taskW := len(appendPacketTask(nil, L))
	if inc.HasWinner {
		taskW = max(taskW, len(appendPacketTask(nil, W)))
	}
	pktLine := func(dst []byte, who byte, p *incident.Packet) []byte {
		dst = append(dst, "  "...)
		dst = appendWho(dst, color, who)
		dst = append(dst, "      "...)
		start := len(dst)
		dst = appendPacketTask(dst, p)
		dst = pad(dst, start, taskW)
		dst = append(dst, "  ct "...)
		dst = appendHex(dst, p.CT)
		dst = append(dst, "  "...)
		dst = appendTuple(dst, p.Orig)
		dst = append(dst, "  reply "...)
		dst = appendTupleEnds(dst, p.Reply)
		if p.NATChange {
			dst = append(dst, " (NAT from "...)
			dst = appendTupleEnds(dst, p.ReplyPre)
			dst = append(dst, ')')
		}
		if p.PortMoved {
			dst = append(dst, " source port moved"...)
		}
		return append(dst, '\n')
	}
	if inc.HasWinner {
		dst = pktLine(dst, 'W', W)
	} else {
		dst = append(dst, "  W      (winner unknown)\n"...)
	}
	dst = pktLine(dst, 'L', L)

	// Timeline.
	rows := timeline(inc)
	base := firstTime(inc)
	offW := 0
	var tmp [32]byte
	for _, r := range rows {
		offW = max(offW, len(appendMicros(tmp[:0], offsetNS(r.stage.Time, base))))
	}
	for _, r := range rows {
		s := r.stage
		dst = append(dst, "    "...)
		o := appendMicros(tmp[:0], offsetNS(s.Time, base))
		dst = appendSpaces(dst, offW-len(o))
		dst = append(dst, '+')
		dst = append(dst, o...)
		dst = append(dst, "µs  "...)
		dst = appendWho(dst, color, r.who)
		dst = append(dst, ' ')
		dst = appendField(dst, "cpu", uint64(s.CPU), wCPU)
		dst = appendKind(dst, color, s.Kind)
		switch s.Kind {
		case event.CTIn:
			dst = appendPadded(dst, HookName(s.Hook), wHook)
			dst = append(dst, ' ')
			orig := s.Before
			if !orig.Src.IsValid() {
				orig = r.pkt.Orig
			}
			dst = appendTuple(dst, orig)
			dst = append(dst, " reply "...)
			dst = appendTupleEnds(dst, s.After)
		case event.NAT:
			manip, _ := manipNames(s.Manip)
			dst = appendPadded(dst, manip, wHook)
			dst = append(dst, " reply "...)
			dst = appendTupleEnds(dst, s.Before)
			dst = append(dst, " → "...)
			dst = appendTupleEnds(dst, s.After)
			if !s.Change {
				dst = append(dst, " (unchanged)"...)
			}
		case event.Clash:
			dst = appendPadded(dst, "", wHook)
			dst = append(dst, " winner "...)
			if inc.HasWinner {
				dst = appendHex(dst, W.CT)
			}
			switch inc.ClashDir {
			case 0:
				dst = append(dst, " holds the original tuple"...)
			case 1:
				dst = append(dst, " holds the reply tuple"...)
			default:
				dst = append(dst, " holds the tuple"...)
			}
		case event.Confirm:
			if s.Result == event.VerdictDrop {
				dst = appendColored(dst, color, ansiRed, "DROP", wHook)
				if !r.winner {
					dst = append(dst, " the packet is freed"...)
				}
				break
			}
			dst = appendPadded(dst, verdictName(s.Result), wHook)
			dst = append(dst, ' ')
			switch {
			case r.winner:
				dst = append(dst, "inserted"...)
			case inc.Outcome == incident.OutcomeMerged:
				dst = appendColored(dst, color, ansiGreen, "merged into W", 0)
			case inc.Outcome == incident.OutcomeNATClash:
				dst = appendColored(dst, color, ansiYellow, "NAT_CLASH", 0)
				dst = append(dst, ": inserted reply-only"...)
			default:
				dst = append(dst, "inserted"...)
			}
		}
		dst = append(dst, '\n')
	}

	// Window.
	dst = append(dst, "  window "...)
	switch {
	case inc.Loser.Born == 0 && inc.Winner.Born == 0:
		// The default mode and --all do not probe nf_conntrack_in;
		// --timeline loses the births too when both histories were evicted
		// (counted as no-history losses).
		dst = append(dst, "unknown (neither packet was seen entering conntrack: --timeline follows both, unless their histories were evicted)\n"...)
	case inc.Window == 0 || !inc.HasWinner:
		dst = append(dst, "unknown (a packet's conntrack entry was not seen)\n"...)
	default:
		dst = appendMicros(dst, inc.Window)
		dst = append(dst, "µs between the two packets entering conntrack"...)
		if W.Born != 0 && L.Born != 0 {
			if L.Born < W.Born {
				dst = append(dst, " (L first)"...)
			} else {
				dst = append(dst, " (W first)"...)
			}
		}
		dst = append(dst, '\n')
	}
	return append(dst, '\n')
}
