package render

import (
	"slices"

	"github.com/ctprobe/ctprobe/tracer/dnsmsg"
	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/names"
)

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
	case incident.OutcomePortMoved:
		return "sent from another source port"
	}
	return string(o)
}

// appendFlow writes a packet's entry: "ct 0x…  udp a:1->b:2  reply b:2->a:1".
func appendFlow(dst []byte, p *incident.Packet) []byte {
	dst = append(dst, "ct "...)
	dst = appendHex(dst, p.CT)
	dst = append(dst, "  "...)
	dst = appendTuple(dst, p.Orig)
	dst = append(dst, "  reply "...)
	return appendTupleEnds(dst, p.Reply)
}

func appendDNSQuery(dst []byte, q *incident.DNSQuery) []byte {
	if !q.Valid {
		return append(dst, '?')
	}
	if q.Type != 0 {
		dst = append(dst, dnsmsg.TypeName(q.Type)...)
	} else {
		dst = append(dst, '?')
	}
	dst = append(dst, ' ')
	dst = appendDNSName(dst, q.Name, q.Truncated && q.Type == 0)
	dst = append(dst, " id "...)
	return appendHex(dst, uint64(q.ID))
}

// appendBracketedNames writes " [default/client-a/lookup]" after a sender
// in an incident's first line, or nothing when nothing is known.
func appendBracketedNames(dst []byte, n *names.Names) []byte {
	if !n.Pod.Known() && n.ContainerID == "" {
		return dst
	}
	dst = append(dst, " ["...)
	dst = appendNames(dst, n)
	return append(dst, ']')
}

// appendNetnsName writes " (NAME)" after a netns inode named in /run/netns.
func appendNetnsName(dst []byte, n *names.Names) []byte {
	if n.Netns == "" {
		return dst
	}
	dst = append(dst, " ("...)
	dst = appendEscaped(dst, n.Netns)
	return append(dst, ')')
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
// appendPIDComm writes " — pid 4242 ctlab" for a packet whose sender is
// known (p.Task).
func appendPIDComm(dst []byte, p *incident.Packet) []byte {
	dst = append(dst, " — pid "...)
	dst = appendUint(dst, uint64(p.PID))
	dst = append(dst, ' ')
	return appendEscaped(dst, p.Comm)
}

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
//	12:00:03.123456 race 3 (DNAT chose different endpoints) — nat-clash — pid 4242 ctlab [default/client-a/lookup], socket cookie 0x1f inode 12345, netns 4026532201
//	  dns  A lab.example. id 0x1234 ok / AAAA lab.example. id 0x1235 — inserted reply-only
//	  W    ctlab[4242/4243]  default/client-a/lookup  ct 0xffff888004a1b300  udp 10.244.1.2:41000->10.96.0.10:53  reply 10.244.2.1:53->10.244.1.2:41000
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
	dst = append(dst, inc.Race.Name()...)
	if inc.Race == incident.RaceUnknown && inc.Reason != "" {
		dst = append(dst, ": "...)
		dst = appendEscaped(dst, inc.Reason)
	}
	dst = append(dst, ')')
	if color {
		dst = append(dst, ansiReset...)
	}
	dst = append(dst, " — "...)
	dst = appendColored(dst, color, outcomeColor(inc.Outcome), string(inc.Outcome), 0)
	if L.Task {
		dst = appendPIDComm(dst, L)
	} else {
		dst = append(dst, " — sender unknown"...)
	}
	dst = appendBracketedNames(dst, &L.Names)
	if L.HasSock {
		dst = append(dst, ", socket cookie "...)
		dst = appendHex(dst, L.Sock.Cookie)
		dst = append(dst, " inode "...)
		dst = appendUint(dst, uint64(L.Sock.Inode))
	}
	dst = append(dst, ", netns "...)
	dst = appendUint(dst, uint64(L.Netns))
	dst = appendNetnsName(dst, &L.Names)
	if L.Zone != 0 {
		dst = append(dst, " zone "...)
		dst = appendUint(dst, uint64(L.Zone))
	}
	if inc.HasWinner {
		otherTask := W.Task && (!L.Task || W.PID != L.PID)
		otherPod := W.Names.Pod != L.Names.Pod && W.Names.Pod.Known()
		if otherTask {
			dst = append(dst, "; winner pid "...)
			dst = appendUint(dst, uint64(W.PID))
			dst = append(dst, ' ')
			dst = appendEscaped(dst, W.Comm)
		} else if otherPod {
			dst = append(dst, "; winner"...)
		}
		if otherTask || otherPod {
			dst = appendBracketedNames(dst, &W.Names)
		}
		if W.Netns != L.Netns {
			if otherTask || otherPod {
				dst = append(dst, ", netns "...)
			} else {
				dst = append(dst, "; winner netns "...)
			}
			dst = appendUint(dst, uint64(W.Netns))
			dst = appendNetnsName(dst, &W.Names)
		}
	}
	dst = append(dst, '\n')

	// Why, for classified races (unclassified ones say it in the header).
	if inc.Race != incident.RaceUnknown && inc.Reason != "" {
		dst = append(dst, "  why    "...)
		dst = appendEscaped(dst, inc.Reason)
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

	// One line per packet: task, pod and container, ct, tuple, final reply.
	// The tasks are measured in a buffer on the stack: grown from nil,
	// one would be reallocated for the eight bytes of slack that each of
	// its numbers is written with (appendDigits).
	var task [128]byte
	taskW := len(appendPacketTask(task[:0], L))
	podW := len(appendNames(nil, &L.Names))
	if inc.HasWinner {
		taskW = max(taskW, len(appendPacketTask(task[:0], W)))
		podW = max(podW, len(appendNames(nil, &W.Names)))
	}
	pktLine := func(dst []byte, who byte, p *incident.Packet) []byte {
		dst = append(dst, "  "...)
		dst = appendWho(dst, color, who)
		dst = append(dst, "      "...)
		start := len(dst)
		dst = appendPacketTask(dst, p)
		dst = pad(dst, start, taskW)
		if podW > 0 {
			dst = append(dst, "  "...)
			start = len(dst)
			dst = appendNames(dst, &p.Names)
			dst = pad(dst, start, podW)
		}
		dst = append(dst, "  "...)
		dst = appendFlow(dst, p)
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
	default:
		window, known := inc.KnownWindow()
		if !known {
			dst = append(dst, "unknown (a packet's conntrack entry was not seen)\n"...)
			break
		}
		dst = appendMicros(dst, window)
		dst = append(dst, "µs between the two packets entering conntrack"...)
		switch {
		case L.Born < W.Born:
			dst = append(dst, " (L first)"...)
		case W.Born < L.Born:
			dst = append(dst, " (W first)"...)
		}
		dst = append(dst, '\n')
	}
	return append(dst, '\n')
}
