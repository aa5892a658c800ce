package render

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"time"

	"github.com/ctprobe/ctprobe/tracer/encap"
	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/kstat"
	"github.com/ctprobe/ctprobe/tracer/loss"
	"github.com/ctprobe/ctprobe/tracer/names"
	"github.com/ctprobe/ctprobe/tracer/summary"
)

// Fixtures: the CoreDNS lab of docs/kernel-notes.md, Provoking the races. A pod 10.244.1.2 resolves
// through the ClusterIP 10.96.0.10:53, DNATed to 10.244.2.1:53 or
// 10.244.3.1:53; glibc sends A and AAAA from one socket (port 41000) on two
// threads.

const (
	tNetns  = 4026532201
	tBase   = 1_000_000_000_000 // ktime of the first event: 1000 s after boot
	ctW     = 0xffff888004a1b300
	ctL     = 0xffff888004a1b200
	ctOther = 0xffff888004a1c000
	skbW    = 0xffff888003f0e000
	skbL    = 0xffff888003f0e100
)

// testClock puts tBase at 2024-05-01 12:00:03.123456 UTC.
var testClock = Clock{
	BootTimeUnixNano: time.Date(2024, 5, 1, 12, 0, 3, 123456000, time.UTC).UnixNano() - tBase,
	Location:         time.UTC,
}

// testNow is the time of lines without a kernel timestamp.
var testNow = time.Date(2024, 5, 1, 12, 0, 10, 0, time.UTC)

func testOptions(color bool) Options {
	return Options{Clock: testClock, Color: color, Now: func() time.Time { return testNow }}
}

func ap(s string) netip.Addr { return netip.MustParseAddr(s) }

func tup(proto uint8, src string, sport uint16, dst string, dport uint16) event.Tuple {
	return event.Tuple{Src: ap(src), Dst: ap(dst), SrcPort: sport, DstPort: dport, Proto: proto}
}

func udp(src string, sport uint16, dst string, dport uint16) event.Tuple {
	return tup(17, src, sport, dst, dport)
}

func comm(s string) (c [16]byte) {
	copy(c[:], s)
	return c
}

// dnsQuery builds a DNS message with one question, as glibc sends it.
func dnsQuery(id uint16, qtype uint16, name string, response bool) []byte {
	b := make([]byte, 12)
	binary.BigEndian.PutUint16(b[0:], id)
	b[2] = 0x01 // RD
	if response {
		b[2] |= 0x80
	}
	binary.BigEndian.PutUint16(b[4:], 1) // QDCOUNT
	if name != "." {
		for _, l := range strings.Split(strings.TrimSuffix(name, "."), ".") {
			b = append(b, byte(len(l)))
			b = append(b, l...)
		}
	}
	b = append(b, 0)
	b = binary.BigEndian.AppendUint16(b, qtype)
	return binary.BigEndian.AppendUint16(b, 1) // IN
}

func withPayload(ev event.Event, p []byte) event.Event {
	n := copy(ev.Payload[:], p)
	ev.PayloadLen = uint16(n)
	return ev
}

var (
	origQ    = udp("10.244.1.2", 41000, "10.96.0.10", 53)
	replyPre = udp("10.96.0.10", 53, "10.244.1.2", 41000)
	replyEp1 = udp("10.244.2.1", 53, "10.244.1.2", 41000)
	replyEp2 = udp("10.244.3.1", 53, "10.244.1.2", 41000)
	sockQ    = event.Socket{Cookie: 0x1f, Inode: 12345, Family: 2, State: 7, Port: 41000}
)

// testEvents are events as the BPF programs fill them, one or more per kind
// and per case that renders differently.
func testEvents() []event.Event {
	base := event.Event{
		CPU: 1, PID: 4242, TID: 4244, Comm: comm("ctlab"), Cgroup: 7788,
		Netns: tNetns, Hook: event.HookNone, Verdict: 0,
	}
	var evs []event.Event
	add := func(dt uint64, ev event.Event) {
		ev.Time = tBase + dt
		evs = append(evs, ev)
	}

	// CT_IN: a new, unconfirmed ct for the AAAA query at LOCAL_OUT.
	e := base
	e.Kind, e.Flags, e.CT, e.SKB = event.CTIn, event.FlagNew|event.FlagSock, ctL, skbL
	e.Hook, e.CTInfo, e.Verdict = 3, 2, event.VerdictAccept
	e.Orig, e.Reply, e.Sock = origQ, replyPre, sockQ
	add(0, withPayload(e, dnsQuery(0x1235, 28, "lab.example.", false)))

	// CT_IN: the reply arriving at PREROUTING in softirq context.
	e = base
	e.Kind, e.Flags, e.CT, e.SKB = event.CTIn, event.FlagSoftirqKey, ctW, skbW
	e.PID, e.TID, e.Comm, e.CPU = 0, 0, comm("swapper/0"), 0
	e.Hook, e.CTInfo, e.Verdict = 0, 3, event.VerdictAccept
	e.Status = event.StatusConfirmed | event.StatusDstNAT | event.StatusSeenReply | event.StatusSrcNATDone | event.StatusDstNATDone
	e.Orig, e.Reply = origQ, replyEp1
	add(1500, withPayload(e, dnsQuery(0x1234, 1, "lab.example.", true)))

	// CT_IN: IPv6, in a zone with a mark, ct_in dropped it.
	e = base
	e.Kind, e.CT = event.CTIn, ctOther
	e.Hook, e.CTInfo, e.Verdict, e.Zone, e.Mark = 1, 0, event.VerdictDrop, 3, 0x4000
	e.Orig = tup(6, "fd00::2", 443, "fd00::1", 50000)
	e.Reply = tup(6, "fd00::1", 50000, "fd00::2", 443)
	add(2000, e)

	// CT_IN: ICMP echo, new.
	e = base
	e.Kind, e.Flags, e.CT = event.CTIn, event.FlagNew, ctOther
	e.Hook, e.CTInfo, e.Verdict = 3, 2, event.VerdictAccept
	e.Orig = tup(1, "10.244.1.2", 7, "10.244.2.1", 8<<8)
	e.Reply = tup(1, "10.244.2.1", 7, "10.244.1.2", 0)
	add(2500, e)

	// NAT: DNAT to the second endpoint (nf_nat_setup_info), rule range.
	e = base
	e.Kind, e.Flags, e.CT, e.Aux = event.NAT, event.FlagNATChanged, ctL, event.ManipDst
	e.Status = event.StatusDstNAT
	e.Orig, e.Before, e.Reply = origQ, replyPre, replyEp2
	e.Range = event.NATRange{MinAddr: ap("10.244.3.1"), MaxAddr: ap("10.244.3.1"), MinPort: 53, MaxPort: 53,
		Flags: event.RangeMapIPs | event.RangeProtoSpecified}
	add(4000, e)

	// NAT: the null SRC binding, unchanged.
	e = base
	e.Kind, e.CT, e.Aux = event.NAT, ctL, event.ManipSrc
	e.Status = event.StatusDstNAT
	e.Orig, e.Before, e.Reply = origQ, replyEp2, replyEp2
	add(5000, e)

	// NAT: MASQUERADE --random-fully moved the source port
	// (get_unique_tuple, ORIGINAL direction).
	e = base
	e.Kind, e.Flags, e.CT, e.Aux = event.NAT, event.FlagNATChanged|event.FlagNATGUT, ctOther, event.ManipSrc
	e.Orig = udp("10.244.1.2", 41000, "192.0.2.53", 53)
	e.Before = e.Orig
	e.Reply = udp("198.51.100.7", 61000, "192.0.2.53", 53)
	e.Range = event.NATRange{MinAddr: ap("198.51.100.7"), MaxAddr: ap("198.51.100.8"), MinPort: 1024, MaxPort: 65535,
		Flags: event.RangeMapIPs | event.RangeProtoSpecified | event.RangeProtoRandomFull}
	add(5500, e)

	// CLASH: the loser finds the winner's ORIGINAL node.
	e = base
	e.Kind, e.Flags, e.CT, e.OtherCT, e.SKB, e.Aux = event.Clash, event.FlagHistory, ctL, ctW, skbL, 0
	e.Status = event.StatusConfirmed | event.StatusDstNAT | event.StatusSrcNATDone | event.StatusDstNATDone
	e.Orig, e.Reply = origQ, replyEp1
	add(20000, e)

	// CONFIRM: the winner inserted normally, replayed from history.
	e = base
	e.Kind, e.Flags, e.CT, e.OtherCT, e.SKB = event.Confirm, event.FlagHistory|event.FlagWinner|event.FlagSock, ctW, ctW, skbW
	e.TID, e.CPU, e.Verdict = 4243, 0, event.VerdictAccept
	e.Status = event.StatusConfirmed | event.StatusDstNAT | event.StatusSrcNATDone | event.StatusDstNATDone
	e.Orig, e.Reply, e.Sock = origQ, replyEp1, sockQ
	add(10000, e)

	// CONFIRM: merged into the winner.
	e = base
	e.Kind, e.Flags, e.CT, e.OtherCT, e.SKB = event.Confirm, event.FlagSock, ctL, ctW, skbL
	e.Verdict, e.Status = event.VerdictAccept, event.StatusConfirmed|event.StatusDstNAT
	e.Orig, e.Reply, e.Sock = origQ, replyEp1, sockQ
	add(21000, e)

	// CONFIRM: inserted reply-only (5.6+).
	e = base
	e.Kind, e.Flags, e.CT, e.OtherCT, e.SKB = event.Confirm, event.FlagSock, ctL, ctL, skbL
	e.Verdict = event.VerdictAccept
	e.Status = event.StatusConfirmed | event.StatusDstNAT | event.StatusNATClash | event.StatusFixedTimeout | event.StatusSrcNATDone | event.StatusDstNATDone
	e.Orig, e.Reply, e.Sock = origQ, replyEp2, sockQ
	add(21000, e)

	// CONFIRM: dropped (6.18: CONFIRMED clear on the loser).
	e = base
	e.Kind, e.Flags, e.CT, e.OtherCT, e.SKB = event.Confirm, event.FlagSock, ctL, ctL, skbL
	e.Verdict, e.Status = event.VerdictDrop, event.StatusDstNAT
	e.Orig, e.Reply, e.Sock = origQ, replyEp2, sockQ
	add(21000, e)
	return evs
}

// Incidents, one per race type.

func stage(kind event.Kind, dt uint64, cpu uint32) incident.Stage {
	return incident.Stage{Kind: kind, Time: tBase + dt, CPU: cpu, Hook: event.HookNone, Manip: -1}
}

func ctIn(dt uint64, cpu uint32, reply event.Tuple) incident.Stage {
	s := stage(event.CTIn, dt, cpu)
	s.Hook, s.After = 3, reply
	return s
}

func nat(dt uint64, cpu uint32, manip int, before, after event.Tuple) incident.Stage {
	s := stage(event.NAT, dt, cpu)
	s.Manip, s.Before, s.After, s.Change = manip, before, after, before != after
	return s
}

func confirm(dt uint64, cpu uint32, verdict uint32, reply event.Tuple) incident.Stage {
	s := stage(event.Confirm, dt, cpu)
	s.Result, s.After = verdict, reply
	return s
}

// dnsPair is the W (A) and L (AAAA) packets of one glibc lookup, W through
// endpoint wReply and L through lReply.
func dnsPair(wReply, lReply event.Tuple) (W, L incident.Packet) {
	W = incident.Packet{
		CT: ctW, Comm: "ctlab", PID: 4242, TID: 4243, Task: true, CPU: 0, Netns: tNetns,
		Sock: sockQ, HasSock: true, Orig: origQ, Reply: wReply, ReplyPre: replyPre,
		NATChange: wReply != replyPre,
		DNS:       incident.DNSQuery{ID: 0x1234, Type: 1, Name: "lab.example", Valid: true},
		Born:      tBase,
	}
	W.Timeline = []incident.Stage{
		ctIn(0, 0, replyPre),
		nat(4000, 0, event.ManipDst, replyPre, wReply),
		nat(6000, 0, event.ManipSrc, wReply, wReply),
		confirm(10000, 0, event.VerdictAccept, wReply),
	}
	L = incident.Packet{
		CT: ctL, Comm: "ctlab", PID: 4242, TID: 4244, Task: true, CPU: 1, Netns: tNetns,
		Sock: sockQ, HasSock: true, Orig: origQ, Reply: lReply, ReplyPre: replyPre,
		NATChange: lReply != replyPre,
		DNS:       incident.DNSQuery{ID: 0x1235, Type: 28, Name: "lab.example", Valid: true},
		Born:      tBase + 1500,
	}
	L.Timeline = []incident.Stage{
		ctIn(1500, 1, replyPre),
		nat(5000, 1, event.ManipDst, replyPre, lReply),
		nat(7000, 1, event.ManipSrc, lReply, lReply),
		stage(event.Clash, 20000, 1),
	}
	return W, L
}

// The pod of the named fixtures.
var (
	checkoutPod = names.Pod{Namespace: "default", Name: "checkout-7f9c6d5b8-x2k4q", UID: "5c2a8e41-7d19-4b6e-8f02-93d4e1a7b6c2"}
	checkoutCtr = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

func testIncidents() []incident.Incident {
	var out []incident.Incident

	// Race 1: same endpoint, merged (4.19+).
	W, L := dnsPair(replyEp1, replyEp1)
	L.Timeline = append(L.Timeline, confirm(21000, 1, event.VerdictAccept, replyEp1))
	out = append(out, incident.Incident{
		Time: tBase + 21000, Race: incident.RaceIdentical, Outcome: incident.OutcomeMerged,
		Reason: "same original and reply tuples", Winner: W, Loser: L, HasWinner: true, Window: 1500, ClashDir: 0,
	})

	// Race 2: the loser's SNAT null binding moved the source port; dropped
	// (4.19.0 without 4e35c1cb9460). No DNAT here: nf_nat is merely loaded.
	direct := udp("10.244.1.2", 41000, "10.244.2.1", 53)
	directPre := udp("10.244.2.1", 53, "10.244.1.2", 41000)
	moved := udp("10.244.2.1", 53, "10.244.1.2", 1025)
	W, L = dnsPair(directPre, moved)
	W.Orig, L.Orig, W.ReplyPre, L.ReplyPre = direct, direct, directPre, directPre
	W.NATChange = false
	W.Timeline = []incident.Stage{ctIn(0, 0, directPre), nat(6000, 0, event.ManipSrc, directPre, directPre), confirm(10000, 0, event.VerdictAccept, directPre)}
	L.PortMoved = true
	L.Timeline = []incident.Stage{ctIn(1500, 1, directPre), nat(12000, 1, event.ManipSrc, directPre, moved), stage(event.Clash, 20000, 1), confirm(21000, 1, event.VerdictDrop, moved)}
	out = append(out, incident.Incident{
		Time: tBase + 21000, Race: incident.RaceNATPort, Outcome: incident.OutcomeDropped,
		Reason: "the loser's SRC binding ran after the winner was confirmed and moved port 41000 to 1025",
		Winner: W, Loser: L, HasWinner: true, Window: 1500, ClashDir: 0,
	})

	// Race 3: DNAT chose different endpoints; inserted reply-only (5.6+).
	// Both packets named by the container runtime (a netns named in
	// /run/netns, as CRI-O and containerd name pods').
	W, L = dnsPair(replyEp1, replyEp2)
	L.Timeline = append(L.Timeline, confirm(21000, 1, event.VerdictAccept, replyEp2))
	W.Names = names.Names{Pod: checkoutPod, Container: "app", ContainerID: checkoutCtr, Netns: "cni-4b1f0c2e"}
	L.Names = W.Names
	out = append(out, incident.Incident{
		Time: tBase + 21000, Race: incident.RaceEndpoints, Outcome: incident.OutcomeNATClash,
		Winner: W, Loser: L, HasWinner: true, Window: 1500, ClashDir: 0,
	})

	// Race 4: two pods SNATed to the same node ip:port; different flows,
	// clash in the reply bucket; dropped.
	snatReply := udp("192.0.2.53", 53, "198.51.100.7", 1024)
	W = incident.Packet{
		CT: ctW, Comm: "curl", PID: 777, TID: 777, Task: true, CPU: 0, Netns: tNetns,
		// curl's resolver, with a name longer than the 64 captured bytes.
		DNS:  incident.DNSQuery{ID: 0x4444, Name: "a-very-long-service-name.a-long-namespace.svc.cl", Valid: true, Truncated: true},
		Orig: udp("10.244.1.9", 5353, "192.0.2.53", 53), ReplyPre: udp("192.0.2.53", 53, "10.244.1.9", 5353),
		Reply: snatReply, NATChange: true, Born: tBase,
		Timeline: []incident.Stage{
			ctIn(0, 0, udp("192.0.2.53", 53, "10.244.1.9", 5353)),
			nat(3000, 0, event.ManipSrc, udp("192.0.2.53", 53, "10.244.1.9", 5353), snatReply),
			confirm(8000, 0, event.VerdictAccept, snatReply),
		},
	}
	L = incident.Packet{
		CT: ctL, Comm: "ctlab", PID: 4242, TID: 4244, Task: true, CPU: 1, Netns: tNetns, Sock: sockQ, HasSock: true,
		Orig: udp("10.244.1.2", 41000, "192.0.2.53", 53), ReplyPre: udp("192.0.2.53", 53, "10.244.1.2", 41000),
		Reply: snatReply, NATChange: true, Born: tBase + 800,
		DNS: incident.DNSQuery{ID: 0x2222, Type: 1, Name: "example.org", Valid: true},
		Timeline: []incident.Stage{
			ctIn(800, 1, udp("192.0.2.53", 53, "10.244.1.2", 41000)),
			nat(3200, 1, event.ManipSrc, udp("192.0.2.53", 53, "10.244.1.2", 41000), snatReply),
			stage(event.Clash, 9000, 1),
			confirm(9500, 1, event.VerdictDrop, snatReply),
		},
	}
	out = append(out, incident.Incident{
		Time: tBase + 9500, Race: incident.RaceSNATPort, Outcome: incident.OutcomeDropped,
		Reason: "different original tuples, same reply tuple", Winner: W, Loser: L, HasWinner: true, Window: 800, ClashDir: 1,
	})

	// Race 5: both peers sent at once, no NAT; merged (6.12+).
	a := udp("10.0.0.1", 4000, "10.0.0.2", 5000)
	b := udp("10.0.0.2", 5000, "10.0.0.1", 4000)
	W = incident.Packet{
		// Arrived at PREROUTING in softirq: the task fields are incidental.
		CT: ctW, Comm: "swapper/0", PID: 0, TID: 0, Task: false, CPU: 0, Netns: tNetns,
		Orig: b, Reply: a, ReplyPre: a, Born: tBase + 300,
		Timeline: []incident.Stage{
			func() incident.Stage { s := ctIn(300, 0, a); s.Hook = 0; return s }(),
			confirm(4000, 0, event.VerdictAccept, a),
		},
	}
	L = incident.Packet{
		CT: ctL, Comm: "peer-a", PID: 800, TID: 800, Task: true, CPU: 1, Netns: tNetns,
		Orig: a, Reply: b, ReplyPre: b, Born: tBase,
		Timeline: []incident.Stage{ctIn(0, 1, b), stage(event.Clash, 5000, 1), confirm(5200, 1, event.VerdictAccept, b)},
	}
	out = append(out, incident.Incident{
		Time: tBase + 5200, Race: incident.RaceReverse, Outcome: incident.OutcomeMerged,
		Reason: "the loser's original tuple is the winner's reply tuple", Winner: W, Loser: L, HasWinner: true, Window: 300, ClashDir: 1,
	})

	// Race 3 in the default mode: only the clash probe ran. The winner has
	// no stages and no task; its socket is the loser's (one ORIGINAL tuple).
	W, L = dnsPair(replyEp1, replyEp2)
	W.Timeline, W.Task, W.Comm, W.PID, W.TID, W.DNS, W.Born = nil, false, "", 0, 0, incident.DNSQuery{}, 0
	L.Timeline, L.Born = []incident.Stage{stage(event.Clash, 30000, 1), confirm(30040, 1, event.VerdictAccept, replyEp2)}, 0
	// Without the runtime: the sender's cgroup path alone names it; the
	// winner, whose sender is unknown, by its netns.
	L.Names = names.Names{Pod: names.Pod{UID: checkoutPod.UID}, ContainerID: checkoutCtr}
	W.Names = names.Names{Pod: names.Pod{UID: checkoutPod.UID}}
	out = append(out, incident.Incident{
		Time: tBase + 30040, Race: incident.RaceEndpoints, Outcome: incident.OutcomeNATClash,
		Reason: "different DNAT endpoints", Winner: W, Loser: L, HasWinner: true, ClashDir: 0,
	})

	// Race 5 before 6.12 with nf_nat loaded (--all): the loser's null SRC
	// binding found its reply tuple held by the peer's entry and moved its
	// port; no clash.
	moved5 := udp("10.0.0.1", 4000, "10.0.0.2", 5001)
	W = incident.Packet{CT: ctW, Netns: tNetns, Orig: a, Reply: b, ReplyPre: b,
		Timeline: []incident.Stage{confirm(6000, 0, event.VerdictAccept, b)}}
	L = incident.Packet{CT: ctL, Comm: "peer-b", PID: 801, TID: 801, Task: true, CPU: 1, Netns: tNetns,
		Orig: b, Reply: moved5, ReplyPre: a, NATChange: true, PortMoved: true,
		Timeline: []incident.Stage{confirm(7000, 1, event.VerdictAccept, moved5)}}
	out = append(out, incident.Incident{
		Time: tBase + 7000, Race: incident.RaceReverse, Outcome: incident.OutcomePortMoved,
		Reason: "reverse collision without a clash: NAT moved the loser's source port 5000→5001", Winner: W, Loser: L, HasWinner: true, ClashDir: -1,
	})

	// Race 0: the loser was dropped but the winner's history was evicted.
	_, L = dnsPair(replyEp1, replyEp2)
	L.Timeline = append(L.Timeline[:3], confirm(21000, 1, event.VerdictDrop, replyEp2))
	out = append(out, incident.Incident{
		Time: tBase + 21000, Race: incident.RaceUnknown, Outcome: incident.OutcomeDropped,
		Reason: "no winner: its history was evicted (no-history)", Loser: L, ClashDir: -1,
	})

	// Fill in the stage tuples as the correlator does: CT_IN and CONFIRM
	// carry the packet's ORIGINAL tuple in Before, CLASH the winner's
	// tuples.
	for i := range out {
		inc := &out[i]
		inc.Mitigation = inc.Race.Mitigation(incident.Facts{Outcome: inc.Outcome, Proto: inc.Loser.Orig.Proto})
		for _, p := range []*incident.Packet{&inc.Winner, &inc.Loser} {
			for j := range p.Timeline {
				s := &p.Timeline[j]
				switch s.Kind {
				case event.CTIn, event.Confirm:
					s.Before = p.Orig
				case event.Clash:
					if inc.HasWinner {
						s.Before, s.After = inc.Winner.Orig, inc.Winner.Reply
					}
				}
			}
		}
	}
	return out
}

// testFindings are a tunnel flow masqueraded a second time, with its inner
// flow, and an insert that failed without a clash.
func testFindings() []incident.Finding {
	outer := udp("192.168.100.1", 41234, "192.168.100.2", 4789)
	outerReply := udp("192.168.100.2", 4789, "192.168.100.1", 61234)
	tunnel := incident.Finding{
		ID: incident.FindingTunnelDoubleSNAT, Time: tBase + 40000,
		Flow: incident.Packet{CT: 0xffff888004a1b400, Netns: tNetns, Orig: outer, Reply: outerReply,
			ReplyPre: udp("192.168.100.2", 4789, "192.168.100.1", 41234), NATChange: true, PortMoved: true},
		Inner: encap.Flow{Valid: true, Kind: encap.VXLAN, VNI: 42, Src: netip.MustParseAddr("10.244.255.1"), Dst: netip.MustParseAddr("10.244.2.1"),
			Proto: 17, SrcPort: 40000, DstPort: 53, HasPorts: true},
		Reason:     "VXLAN traffic from this host source-NATed: 192.168.100.1:41234 now leaves as 192.168.100.1:61234",
		Mitigation: "do not masquerade the tunnel's own packets",
	}
	_, L := dnsPair(replyEp1, replyEp2)
	chain := incident.Finding{
		ID: incident.FindingChainTooLong, Time: tBase + 50000, Flow: L,
		Reason: "the insert failed at confirm without a clash", Mitigation: "a larger hash table",
	}
	chain.Flow.Timeline = nil
	chain.Flow.Names = names.Names{Pod: checkoutPod, Container: "app", ContainerID: checkoutCtr, Netns: "cni-4b1f0c2e"}
	return []incident.Finding{tunnel, chain}
}

// testCounters are the kernel counter deltas over the summary interval.
func testCounters() []kstat.NetnsCounters {
	return []kstat.NetnsCounters{
		{Netns: tNetns, Name: "ctlab", Values: map[string]uint64{"clash_resolve": 4, "insert_failed": 4, "drop": 3, "chain_too_long": 1}, Entries: 12, Max: 262144},
		{Netns: 4026531840, Name: "host", Values: map[string]uint64{"clash_resolve": 0, "insert_failed": 1, "drop": 5, "chain_too_long": 1, "early_drop": 2, "invalid": 1}, Entries: 64, Max: 64},
	}
}

func testTally() *summary.Tally {
	t := summary.NewTally(time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC))
	for _, inc := range testIncidents() {
		t.Add(&inc)
	}
	for _, f := range testFindings() {
		t.AddFinding(&f)
	}
	t.AddLost(loss.Count{Kind: loss.NoHistory, CPU: 1, Count: 1})
	return t
}

func testSummary() *summary.Summary {
	return testTally().Summary(testNow, testCounters(), false)
}
