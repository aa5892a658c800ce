package stream

// A synthetic capture of a busy node traced with `ctprobe trace --all`, for
// the throughput benchmarks and the allocation and memory tests. Records are
// laid out exactly as the kernel writes them (struct event, encoded with
// encoding/binary independently of event.Decode) and go through a real
// capture file, as `ctprobe report` reads them.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net/netip"
	"sort"
	"sync"
	"testing"

	"github.com/ctprobe/ctprobe/lab"
	"github.com/ctprobe/ctprobe/tracer/capture"
	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/probe"
)

// synthOptions shape the mix.
type synthOptions struct {
	Flows       int     // ordinary new flows (each: CT_IN new, NAT DST, NAT SRC, CONFIRM)
	Established float64 // CT_IN events of established flows per new flow (mean)
	Races       float64 // per new flow, the chance of each race: R1 merged, R3 nat-clash, R4 dropped
	Live        int     // flows alive at once; the oldest then dies and its ct pointer is reused
	Gap         uint64  // mean ns between packets on one CPU
	Seed        uint64
}

// busyNode is the mix of the benchmarks: about 65% of the events belong to
// new flows, 30% are packets of established flows, and 1% of the new flows
// lose a race of each type (R1, R3, R4). Two CPUs at about 50k packets/s
// each; ct pointers are reused (SLAB_TYPESAFE_BY_RCU) once a flow dies.
func busyNode() synthOptions {
	return synthOptions{Flows: 20000, Established: 2, Races: 0.01, Live: 12000, Gap: 20000, Seed: 1}
}

// ordinaryNode is busyNode without races: the traffic whose steady state
// allocates nothing.
func ordinaryNode() synthOptions {
	o := busyNode()
	o.Races = 0
	return o
}

// synthCapture is a generated capture and its samples read back.
type synthCapture struct {
	file    []byte   // the capture file
	records [][]byte // its samples, read back with capture.NewReader
	span    uint64   // kernel time the records cover, plus one gap
	races   map[incident.RaceType]int
	kinds   [5]int // events by kind
	new     int    // CT_IN events with FlagNew
}

var (
	busyOnce sync.Once
	busyCap  *synthCapture
	busyErr  error
)

// busyCapture is busyNode's capture, generated once per test binary.
func busyCapture(tb testing.TB) *synthCapture {
	tb.Helper()
	busyOnce.Do(func() { busyCap, busyErr = synthesize(busyNode()) })
	if busyErr != nil {
		tb.Fatal(busyErr)
	}
	return busyCap
}

// advance moves every record's timestamp by span, so that feeding the
// records again continues the stream where it ended (the same ct pointers
// then start new generations, as reused slab objects do).
func (s *synthCapture) advance(records [][]byte) {
	for _, r := range records {
		binary.LittleEndian.PutUint64(r[0:8], binary.LittleEndian.Uint64(r[0:8])+s.span)
	}
}

// decoded decodes every record.
func (s *synthCapture) decoded(tb testing.TB) []event.Event {
	evs := make([]event.Event, len(s.records))
	for i, r := range s.records {
		if err := event.Decode(r, &evs[i]); err != nil {
			tb.Fatal(err)
		}
	}
	return evs
}

// copyRecords copies the samples, so that a benchmark may advance its own.
func (s *synthCapture) copyRecords() [][]byte {
	arena := make([]byte, len(s.records)*event.Size)
	out := make([][]byte, len(s.records))
	for i, r := range s.records {
		out[i] = arena[i*event.Size : (i+1)*event.Size : (i+1)*event.Size]
		copy(out[i], r)
	}
	return out
}

// ---- generator ---------------------------------------------------------

const (
	netnsHost = 4026531840
	nodeIP    = "10.0.0.1"
)

// sflow is one ct: who sent its first packet, its tuples and its NAT.
type sflow struct {
	ct       uint64
	cpu      uint32
	pidTgid  uint64
	cgroup   uint64
	comm     string
	hook     uint8
	origin   bool // forwarded, sender joined at net_dev_queue (FlagOrigin)
	sock     bool // socket on the skb or joined
	cookie   uint64
	ino      uint32
	orig     probe.BPFTuple
	pre      probe.BPFTuple // REPLY before NAT
	afterDst probe.BPFTuple // REPLY after the DST binding
	reply    probe.BPFTuple // REPLY after both bindings
	dnat     netip.AddrPort // zero: DST null binding
	snat     bool
	query    []byte // DNS query (UDP to port 53)
	answer   []byte // its response
}

func (f *sflow) status() uint64 {
	s := uint64(event.StatusConfirmed | event.StatusSrcNATDone | event.StatusDstNATDone)
	if f.dnat.IsValid() {
		s |= event.StatusDstNAT
	}
	if f.snat {
		s |= event.StatusSrcNAT
	}
	return s
}

type srec struct {
	deliver uint64 // position in the ring buffer
	raw     []byte
}

type synth struct {
	opt     synthOptions
	rng     *rand.Rand
	clk     [2]uint64 // per-CPU time
	last    [2]uint64 // per-CPU last delivery: a CPU's records stay in order
	recs    []srec
	nextCT  uint64
	freeCT  []uint64
	live    []*sflow
	liveAt  int
	skb     uint64
	port    uint16
	nextPod int
	out     *synthCapture
}

func synthesize(opt synthOptions) (*synthCapture, error) {
	g := &synth{
		opt:    opt,
		rng:    rand.New(rand.NewPCG(opt.Seed, 0x5eed)),
		nextCT: 0xffff888004000000,
		skb:    0xffff888100000000,
		port:   32768,
		out:    &synthCapture{races: map[incident.RaceType]int{}},
	}
	g.clk = [2]uint64{1e9, 1e9}
	for range opt.Flows {
		switch r := g.rng.Float64(); {
		case r < opt.Races:
			g.race(incident.RaceIdentical)
		case r < 2*opt.Races:
			g.race(incident.RaceEndpoints)
		case r < 3*opt.Races:
			g.race(incident.RaceSNATPort)
		default:
			cpu := uint32(g.rng.IntN(2))
			f := g.newFlow(cpu)
			g.clk[cpu] = g.flowEvents(f, g.clk[cpu]) + g.gap()
			g.born(f)
		}
		// Poisson-ish: Established per flow on average.
		for n := g.opt.Established; n > 0; n-- {
			if n < 1 && g.rng.Float64() >= n {
				break
			}
			g.established()
		}
	}
	return g.finish()
}

func (g *synth) gap() uint64 { return g.opt.Gap/2 + g.rng.Uint64N(g.opt.Gap) }

func (g *synth) ctPtr() uint64 {
	if n := len(g.freeCT); n > 0 {
		ct := g.freeCT[n-1]
		g.freeCT = g.freeCT[:n-1]
		return ct
	}
	g.nextCT += 0x140 // sizeof(struct nf_conn), more or less
	return g.nextCT
}

// born adds f to the live flows; when full, the oldest dies (conntrack
// timeout) and its ct pointer goes back to the slab.
func (g *synth) born(f *sflow) {
	if len(g.live) < g.opt.Live {
		g.live = append(g.live, f)
		return
	}
	g.freeCT = append(g.freeCT, g.live[g.liveAt].ct)
	g.live[g.liveAt] = f
	g.liveAt = (g.liveAt + 1) % len(g.live)
}

func (g *synth) ephemeral() uint16 {
	g.port++
	if g.port == 0 || g.port > 60999 {
		g.port = 32768
	}
	return g.port
}

func v4(a netip.Addr) [16]uint8 {
	var out [16]uint8
	b := a.As4()
	copy(out[:], b[:])
	return out
}

func be16(v uint16) uint16 { return v<<8 | v>>8 }

func tup(proto uint8, src netip.Addr, sport uint16, dst netip.Addr, dport uint16) probe.BPFTuple {
	t := probe.BPFTuple{Sport: be16(sport), Dport: be16(dport), Protonum: proto}
	if src.Is4() {
		t.Src, t.Dst, t.L3num = v4(src), v4(dst), 2
	} else {
		t.Src, t.Dst, t.L3num = src.As16(), dst.As16(), 10
	}
	return t
}

// inv is the REPLY tuple of ORIGINAL t (TCP and UDP).
func inv(t probe.BPFTuple) probe.BPFTuple {
	return probe.BPFTuple{Src: t.Dst, Dst: t.Src, Sport: t.Dport, Dport: t.Sport, L3num: t.L3num, Protonum: t.Protonum, Dir: 1}
}

func setReplySrc(t probe.BPFTuple, a netip.AddrPort) probe.BPFTuple {
	t2 := tup(t.Protonum, a.Addr(), a.Port(), a.Addr(), 0)
	t.Src, t.Sport = t2.Src, t2.Sport
	return t
}

func setReplyDst(t probe.BPFTuple, a netip.AddrPort) probe.BPFTuple {
	t2 := tup(t.Protonum, a.Addr(), 0, a.Addr(), a.Port())
	t.Dst, t.Dport = t2.Dst, t2.Dport
	return t
}

var (
	dnsNames = []string{
		"kube-dns.kube-system.svc.cluster.local",
		"api.payments.svc.cluster.local",
		"redis-master.cache.svc.cluster.local",
		"www.example.com",
		"s3.eu-west-1.amazonaws.com",
	}
	comms    = []string{"curl", "java", "python3", "envoy", "node", "getent", "nginx", "coredns"}
	dnsSvc   = netip.MustParseAddr("10.96.0.10")
	dnsEps   = []netip.Addr{netip.MustParseAddr("10.244.2.11"), netip.MustParseAddr("10.244.3.12")}
	v6Client = netip.MustParseAddr("fd00:10::1")
)

// dnsMessage is a stub resolver's query for name, or (resp) the answer to
// it, built by the lab's DNS code.
func dnsMessage(id uint16, name string, qtype uint16, resp bool) []byte {
	q, err := lab.BuildQuery(id, name, qtype)
	if err != nil || !resp {
		return q
	}
	m, err := lab.ParseMessage(q)
	if err != nil {
		return q
	}
	r, err := lab.BuildResponse(&m, 30)
	if err != nil {
		return q
	}
	return r
}

// pod returns one of the node's pods and its sender.
func (g *synth) pod() (netip.Addr, uint64, string, uint64) {
	g.nextPod = (g.nextPod + 1) % 60
	n := g.nextPod
	pid := uint64(1000 + 37*n)
	return netip.AddrFrom4([4]byte{10, 244, 1, byte(2 + n)}), pid<<32 | (pid + uint64(g.rng.IntN(8))), comms[n%len(comms)], uint64(5000 + n)
}

// newFlow makes an ordinary flow: pod DNS (PREROUTING, sender joined),
// host-network DNS (LOCAL_OUT), pod to a ClusterIP over TCP, IPv6 from a
// host process, and egress masqueraded to the node's address.
func (g *synth) newFlow(cpu uint32) *sflow {
	f := &sflow{ct: g.ctPtr(), cpu: cpu}
	src, pt, comm, cg := g.pod()
	f.pidTgid, f.comm, f.cgroup = pt, comm, cg
	f.cookie = 0x100000 + uint64(g.rng.IntN(1<<20))
	f.ino = uint32(f.cookie)
	port := g.ephemeral()
	switch r := g.rng.IntN(100); {
	case r < 30: // pod DNS to kube-dns
		f.hook, f.origin, f.sock = event.HookPreRouting, true, true
		f.orig = tup(17, src, port, dnsSvc, 53)
		f.dnat = netip.AddrPortFrom(dnsEps[g.rng.IntN(len(dnsEps))], 53)
		g.dns(f)
	case r < 40: // host-network DNS
		f.hook, f.sock = event.HookLocalOut, true
		f.comm = "systemd-resolve"
		f.orig = tup(17, netip.MustParseAddr(nodeIP), port, dnsSvc, 53)
		f.dnat = netip.AddrPortFrom(dnsEps[g.rng.IntN(len(dnsEps))], 53)
		g.dns(f)
	case r < 75: // pod to a ClusterIP over TCP
		f.hook = event.HookPreRouting
		f.origin = g.rng.IntN(10) < 8
		f.sock = f.origin
		svc := netip.AddrFrom4([4]byte{10, 96, byte(g.rng.IntN(4)), byte(1 + g.rng.IntN(200))})
		f.orig = tup(6, src, port, svc, 8080)
		f.dnat = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 244, byte(2 + g.rng.IntN(6)), byte(2 + g.rng.IntN(200))}), 8080)
	case r < 85: // IPv6, host process to a v6 ClusterIP
		f.hook, f.sock = event.HookLocalOut, true
		svc := netip.AddrFrom16([16]byte{0xfd, 0x00, 0, 0x96, 14: byte(g.rng.IntN(4)), 15: byte(1 + g.rng.IntN(200))})
		f.orig = tup(6, v6Client, port, svc, 443)
		f.dnat = netip.AddrPortFrom(netip.AddrFrom16([16]byte{0xfd, 0x00, 0x02, 0x44, 14: byte(2 + g.rng.IntN(6)), 15: byte(2 + g.rng.IntN(200))}), 8443)
	default: // pod egress, masqueraded (port kept)
		f.hook = event.HookPreRouting
		f.origin = g.rng.IntN(10) < 8
		f.sock = f.origin
		dst := netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + g.rng.IntN(250))})
		f.orig = tup(6, src, port, dst, 443)
		f.snat = true
	}
	if !f.sock {
		f.pidTgid, f.comm = 0, "swapper/"+string(rune('0'+cpu))
	}
	g.nat(f, netip.AddrPort{})
	return f
}

// nat fills the REPLY tuples; masq, if valid, is the masquerade address.
func (g *synth) nat(f *sflow, masq netip.AddrPort) {
	f.pre = inv(f.orig)
	f.afterDst = f.pre
	if f.dnat.IsValid() {
		f.afterDst = setReplySrc(f.pre, f.dnat)
	}
	f.reply = f.afterDst
	if f.snat {
		if !masq.IsValid() {
			masq = netip.AddrPortFrom(netip.MustParseAddr(nodeIP), be16(f.orig.Sport))
		}
		f.reply = setReplyDst(f.afterDst, masq)
	}
}

func (g *synth) dns(f *sflow) {
	id := uint16(g.rng.Uint32())
	name := dnsNames[g.rng.IntN(len(dnsNames))]
	qt := uint16(1)
	if g.rng.IntN(2) == 0 {
		qt = 28
	}
	f.query = dnsMessage(id, name, qt, false)
	f.answer = dnsMessage(id, name, qt, true)
}

// base is a record as new_event and read_ct leave it.
func (g *synth) base(f *sflow, kind event.Kind, t uint64, ct *sflow) probe.BPFEvent {
	g.skb += 0x100
	e := probe.BPFEvent{
		Ts: t, Kind: uint8(kind), Hook: event.HookNone, Cpu: f.cpu, PidTgid: f.pidTgid, Cgroup: f.cgroup,
		Skb: 0xffff888100000000 + g.skb%(1<<24), Netns: netnsHost,
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
	e.SkCookie, e.SkIno, e.SkFamily, e.SkState, e.SkPort = f.cookie, f.ino, 2, 1, be16(f.orig.Sport)
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
		a := tup(f.orig.Protonum, f.dnat.Addr(), 0, f.dnat.Addr(), 0).Src
		rng = probe.BPFNatRange{Flags: event.RangeMapIPs | event.RangeProtoSpecified, MinAddr: a, MaxAddr: a,
			MinProto: be16(f.dnat.Port()), MaxProto: be16(f.dnat.Port())}
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
		w.orig = tup(17, src, g.ephemeral(), dnsSvc, 53)
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
			f.orig = tup(17, src, 5353, resolver, 53)
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
	g.out.races[kind]++
	g.born(w)
	if kind == incident.RaceEndpoints {
		g.born(l) // inserted reply-only: it lives on
	} else {
		g.freeCT = append(g.freeCT, l.ct) // freed with its skb
	}
}

// emit encodes a record and places it in the ring buffer: a CPU's records
// in its order, the two CPUs' interleaved by when their probes committed.
func (g *synth) emit(cpu uint32, e *probe.BPFEvent) {
	raw, err := binary.Append(nil, binary.LittleEndian, e)
	if err != nil {
		panic(err)
	}
	d := max(e.Ts+g.rng.Uint64N(400), g.last[cpu])
	g.last[cpu] = d
	g.recs = append(g.recs, srec{deliver: d, raw: raw})
	g.out.kinds[e.Kind]++
	if e.Kind == uint8(event.CTIn) && e.Flags&uint16(event.FlagNew) != 0 {
		g.out.new++
	}
}

// finish writes the records to a capture in ring-buffer order and reads
// them back.
func (g *synth) finish() (*synthCapture, error) {
	sort.SliceStable(g.recs, func(i, j int) bool { return g.recs[i].deliver < g.recs[j].deliver })
	var buf bytes.Buffer
	w, err := capture.NewWriter(&buf, capture.Header{
		CtprobeVersion: "synthetic", Hostname: "busy-node", Mode: "all",
		RecordLayout: probe.RecordLayout, RecordSize: uint32(event.Size),
	})
	if err != nil {
		return nil, err
	}
	first, last := g.recs[0].deliver, uint64(0)
	for _, r := range g.recs {
		if err := w.WriteRecord(r.deliver, r.raw); err != nil {
			return nil, err
		}
		first = min(first, binary.LittleEndian.Uint64(r.raw))
		last = max(last, binary.LittleEndian.Uint64(r.raw))
	}
	if err := w.Close(capture.Trailer{}); err != nil {
		return nil, err
	}
	s := g.out
	s.file = buf.Bytes()
	s.span = last - first + g.opt.Gap
	rd, err := capture.NewReader(bytes.NewReader(s.file))
	if err != nil {
		return nil, err
	}
	arena := make([]byte, 0, len(g.recs)*event.Size)
	for {
		rec, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if rec.Type == capture.TypeSample {
			start := len(arena)
			arena = append(arena, rec.Raw...)
			s.records = append(s.records, arena[start:len(arena):len(arena)])
		}
	}
	return s, nil
}
