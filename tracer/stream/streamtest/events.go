package streamtest

import (
	"encoding/binary"
	"net/netip"

	"github.com/ctprobe/ctprobe/lab"
	"github.com/ctprobe/ctprobe/tracer/dnsmsg"
	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/probe"
)

func v4(a netip.Addr) [16]uint8 {
	var out [16]uint8
	b := a.As4()
	copy(out[:], b[:])
	return out
}

// Net16 is v in network byte order, as the kernel keeps ports.
func Net16(v uint16) uint16 { return v<<8 | v>>8 }

// Tuple is a conntrack tuple as the probes record it.
func Tuple(proto uint8, src netip.Addr, sport uint16, dst netip.Addr, dport uint16) probe.BPFTuple {
	t := probe.BPFTuple{Sport: Net16(sport), Dport: Net16(dport), Protonum: proto}
	if src.Is4() {
		t.Src, t.Dst, t.L3num = v4(src), v4(dst), 2
	} else {
		t.Src, t.Dst, t.L3num = src.As16(), dst.As16(), 10
	}
	return t
}

// Reply is the REPLY tuple of ORIGINAL t (TCP and UDP).
func Reply(t probe.BPFTuple) probe.BPFTuple {
	return probe.BPFTuple{Src: t.Dst, Dst: t.Src, Sport: t.Dport, Dport: t.Sport, L3num: t.L3num, Protonum: t.Protonum, Dir: 1}
}

func setReplySrc(t probe.BPFTuple, a netip.AddrPort) probe.BPFTuple {
	t2 := Tuple(t.Protonum, a.Addr(), a.Port(), a.Addr(), 0)
	t.Src, t.Sport = t2.Src, t2.Sport
	return t
}

func setReplyDst(t probe.BPFTuple, a netip.AddrPort) probe.BPFTuple {
	t2 := Tuple(t.Protonum, a.Addr(), 0, a.Addr(), a.Port())
	t.Dst, t.Dport = t2.Dst, t2.Dport
	return t
}

// dnsMessage is a stub resolver's query for name, or (resp) the answer to
// it, as the lab's responders answer.
func dnsMessage(id uint16, name string, qtype uint16, resp bool) []byte {
	q, err := dnsmsg.BuildQuery(id, name, qtype)
	if err != nil || !resp {
		return q
	}
	m, err := dnsmsg.ParseMessage(q)
	if err != nil {
		return q
	}
	r, err := lab.Answer(&m, 30)
	if err != nil {
		return q
	}
	return r
}

// base is a record as new_event and read_ct leave it.
func (g *synth) base(f *sflow, kind event.Kind, t uint64, ct *sflow) probe.BPFEvent {
	g.skb += 0x100
	e := probe.BPFEvent{
		Ts: t, Kind: uint8(kind), Hook: event.HookNone, Cpu: f.cpu, PidTgid: f.pidTgid, Cgroup: f.cgroup,
		Skb: 0xffff888100000000 + g.skb%(1<<24), Netns: HostNetns,
		Ct: ct.ct, Orig: ct.orig, Reply: ct.reply,
	}
	if uint32(e.PidTgid) == 0 {
		e.Flags |= uint16(event.FlagSoftirqKey)
		e.Cgroup = 1
	}
	for i := 0; i < len(f.comm) && i < 15; i++ {
		e.Comm[i] = int8(f.comm[i])
	}
	return e
}

func (f *sflow) sockInto(e *probe.BPFEvent) {
	if !f.sock {
		return
	}
	e.Flags |= uint16(event.FlagSock)
	if f.origin {
		e.Flags |= uint16(event.FlagOrigin)
		e.Flags &^= uint16(event.FlagSoftirqKey)
	}
	e.SkCookie, e.SkIno, e.SkFamily, e.SkState, e.SkPort = f.cookie, f.ino, 2, 1, Net16(f.orig.Sport)
	if f.orig.L3num == 10 {
		e.SkFamily = 10
	}
}

func (g *synth) in(f *sflow, t uint64) {
	e := g.base(f, event.CTIn, t, f)
	e.Hook, e.Ctinfo, e.Ret = f.hook, event.CTNew, event.VerdictAccept
	e.Reply = f.pre
	e.Flags |= uint16(event.FlagNew)
	f.sockInto(&e)
	if f.query != nil {
		e.PayloadLen = uint16(copy(e.Payload[:], f.query))
	}
	g.emit(f.cpu, &e)
}

func (g *synth) natEv(f *sflow, t uint64, manip uint8, before, after probe.BPFTuple, status uint64, rng probe.BPFNatRange) {
	e := g.base(f, event.NAT, t, f)
	e.Aux, e.Before, e.Reply, e.Status, e.Range = manip, before, after, status, rng
	if before != after {
		e.Flags |= uint16(event.FlagNATChanged)
	}
	g.emit(f.cpu, &e)
}

// natDst and natSrc are the two bindings; a null binding maps to the
// address the packet already has (nf_nat_alloc_null_binding).
func (g *synth) natDst(f *sflow, t uint64) {
	rng := probe.BPFNatRange{Flags: event.RangeMapIPs, MinAddr: f.orig.Dst, MaxAddr: f.orig.Dst}
	status := uint64(event.StatusDstNATDone)
	if f.dnat.IsValid() {
		a := Tuple(f.orig.Protonum, f.dnat.Addr(), 0, f.dnat.Addr(), 0).Src
		rng = probe.BPFNatRange{Flags: event.RangeMapIPs | event.RangeProtoSpecified, MinAddr: a, MaxAddr: a,
			MinProto: Net16(f.dnat.Port()), MaxProto: Net16(f.dnat.Port())}
		status |= event.StatusDstNAT
	}
	g.natEv(f, t, event.ManipDst, f.pre, f.afterDst, status, rng)
}

func (g *synth) natSrc(f *sflow, t uint64) {
	rng := probe.BPFNatRange{Flags: event.RangeMapIPs, MinAddr: f.orig.Src, MaxAddr: f.orig.Src}
	status := uint64(event.StatusDstNATDone | event.StatusSrcNATDone)
	if f.dnat.IsValid() {
		status |= event.StatusDstNAT
	}
	if f.snat {
		rng = probe.BPFNatRange{Flags: event.RangeMapIPs, MinAddr: f.reply.Dst, MaxAddr: f.reply.Dst}
		status |= event.StatusSrcNAT
	}
	g.natEv(f, t, event.ManipSrc, f.afterDst, f.reply, status, rng)
}

// confirm is __nf_conntrack_confirm's exit: the loser's tuples at entry,
// the rest read from the ct on the skb afterwards.
func (g *synth) confirm(f *sflow, t uint64, verdict uint32, after *sflow, status uint64) {
	e := g.base(f, event.Confirm, t, f)
	e.Ctinfo, e.Ret, e.OtherCt, e.Status = event.CTNew, verdict, after.ct, status
	f.sockInto(&e)
	e.Flags &^= uint16(event.FlagOrigin) // read_sock only: no join at confirm
	if f.origin {
		e.Flags &^= uint16(event.FlagSock)
		e.SkCookie, e.SkIno, e.SkFamily, e.SkState, e.SkPort = 0, 0, 0, 0, 0
	}
	if g.opt.ConfirmsOnly {
		// read_sender: the DNS message, and whether the skb was made here.
		e.PayloadLen = uint16(copy(e.Payload[:], f.query))
		if f.hook == event.HookLocalOut {
			e.Flags |= uint16(event.FlagLocal)
		}
	}
	g.emit(f.cpu, &e)
}

// flowEvents writes the four events of a new flow from t and returns the
// time of its last one.
func (g *synth) flowEvents(f *sflow, t uint64) uint64 {
	g.in(f, t)
	g.natDst(f, t+250+g.rng.Uint64N(100))
	g.natSrc(f, t+500+g.rng.Uint64N(200))
	end := t + 900 + g.rng.Uint64N(600)
	g.confirm(f, end, event.VerdictAccept, f, f.status())
	return end
}

// established is a later packet of a live flow, either direction.
func (g *synth) established() {
	if len(g.live) == 0 {
		return
	}
	f := g.live[g.rng.IntN(len(g.live))]
	cpu := uint32(g.rng.IntN(2))
	t := g.clk[cpu]
	g.clk[cpu] += 300 + g.gap()
	p := *f
	p.cpu = cpu
	e := g.base(&p, event.CTIn, t, f)
	e.Ret, e.Status = event.VerdictAccept, f.status()|event.StatusSeenReply|event.StatusAssured
	if g.rng.IntN(2) == 0 {
		e.Hook, e.Ctinfo = f.hook, event.CTEstablished
		p.sockInto(&e)
		if f.query != nil {
			e.PayloadLen = uint16(copy(e.Payload[:], f.query))
		}
	} else {
		// A reply arrives from the network: softirq, no socket.
		e.Hook, e.Ctinfo = event.HookPreRouting, event.CTEstablishedReply
		e.PidTgid, e.Cgroup = 0, 1
		e.Flags |= uint16(event.FlagSoftirqKey)
		e.Comm = [16]int8{}
		copy(e.Comm[:], []int8{'k', 's', 'o', 'f', 't', 'i', 'r', 'q', 'd', '/', int8('0' + cpu)})
		if f.answer != nil {
			e.PayloadLen = uint16(copy(e.Payload[:], f.answer))
		}
	}
	g.emit(cpu, &e)
}

// race writes two flows whose packets left one socket (R1, R3) or two pods
// (R4) at the same instant on the two CPUs, and the loser's clash.
func (g *synth) race(kind incident.RaceType) {
	a := uint32(g.rng.IntN(2))
	b := 1 - a
	t := max(g.clk[0], g.clk[1])
	w := g.newFlow(a)
	l := &sflow{}
	switch kind {
	case incident.RaceIdentical, incident.RaceEndpoints:
		// The A and AAAA queries of one pod's resolver, same socket.
		src, pt, comm, cg := g.pod()
		w.cpu, w.hook, w.origin, w.sock, w.pidTgid, w.comm, w.cgroup = a, event.HookPreRouting, true, true, pt, comm, cg
		w.orig = Tuple(17, src, g.ephemeral(), DNSService, 53)
		w.dnat, w.snat = netip.AddrPortFrom(dnsEps[0], 53), false
		g.dns(w)
		g.nat(w, netip.AddrPort{})
		*l = *w
		l.ct, l.cpu = g.ctPtr(), b
		l.pidTgid = pt + 1
		l.query = dnsMessage(uint16(g.rng.Uint32()), "kube-dns.kube-system.svc.cluster.local", 28, false)
		if kind == incident.RaceEndpoints {
			l.dnat = netip.AddrPortFrom(dnsEps[1], 53)
		}
		g.nat(l, netip.AddrPort{})
	case incident.RaceSNATPort:
		// Two pods to one external resolver, masqueraded to one node port.
		masq := netip.AddrPortFrom(netip.MustParseAddr(nodeIP), 40000+uint16(g.rng.IntN(1000)))
		resolver := netip.MustParseAddr("8.8.8.8")
		for i, f := range []*sflow{w, l} {
			if i == 1 {
				f.ct, f.cpu = g.ctPtr(), b
			}
			src, pt, comm, cg := g.pod()
			f.pidTgid, f.comm, f.cgroup, f.cookie, f.ino = pt, comm, cg, uint64(0x200000+i), uint32(0x200000+i)
			f.hook, f.origin, f.sock = event.HookPreRouting, true, true
			f.orig = Tuple(17, src, 5353, resolver, 53)
			f.dnat, f.snat = netip.AddrPort{}, true
			g.dns(f)
			g.nat(f, masq)
		}
	}
	// W's packet first, L's 50-200ns later; L's bindings run before W is
	// confirmed, and its confirm finds W in the table.
	wEnd := g.flowEvents(w, t)
	lt := t + 50 + g.rng.Uint64N(150)
	g.in(l, lt)
	g.natDst(l, lt+250)
	g.natSrc(l, lt+500)
	ct := max(wEnd, lt+900) + 100
	cl := g.base(l, event.Clash, ct, w)
	cl.Ct, cl.OtherCt, cl.Status, cl.Ctinfo = l.ct, w.ct, w.status(), event.CTNew
	var lconfStatus uint64
	var after *sflow
	verdict := uint32(event.VerdictAccept)
	switch kind {
	case incident.RaceIdentical:
		cl.Aux, after, lconfStatus = 0, w, w.status()
	case incident.RaceEndpoints:
		cl.Aux, after, lconfStatus = 0, l, l.status()|event.StatusNATClash|event.StatusFixedTimeout
	case incident.RaceSNATPort:
		cl.Aux, after, lconfStatus, verdict = 1, l, l.status()&^event.StatusConfirmed, event.VerdictDrop
	}
	g.emit(b, &cl)
	g.confirm(l, ct+10, verdict, after, lconfStatus)
	g.clk[a] = wEnd + g.gap()
	g.clk[b] = ct + 10 + g.gap()
	g.out.Races[kind]++
	g.born(w)
	if kind == incident.RaceEndpoints {
		g.born(l) // inserted reply-only: it lives on
	} else {
		g.freeCT = append(g.freeCT, l.ct) // freed with its skb
	}
}

// emit encodes a record and places it in the ring buffer: a CPU's records
// in its order, the two CPUs' interleaved by when their probes committed.
// With ConfirmsOnly only confirm's and the clash's records are kept.
func (g *synth) emit(cpu uint32, e *probe.BPFEvent) {
	if g.opt.ConfirmsOnly && e.Kind != uint8(event.Confirm) && e.Kind != uint8(event.Clash) {
		return
	}
	raw, err := binary.Append(nil, binary.LittleEndian, e)
	if err != nil {
		panic(err)
	}
	d := max(e.Ts+g.rng.Uint64N(400), g.last[cpu])
	g.last[cpu] = d
	g.recs = append(g.recs, srec{deliver: d, raw: raw})
	g.out.Kinds[e.Kind]++
	if e.Kind == uint8(event.CTIn) && e.Flags&uint16(event.FlagNew) != 0 {
		g.out.New++
	}
}
