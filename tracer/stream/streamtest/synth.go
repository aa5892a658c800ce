// Package streamtest makes synthetic captures of a busy node traced with
// `ctprobe trace --all --timeline` (every probe point's events) or with
// `ctprobe trace --all` (confirms and clashes only), for the throughput
// benchmarks, the allocation and memory tests of the pipeline and the soak
// test of the metrics exporter.
// Records are laid out exactly as the kernel writes them (struct event,
// encoded with encoding/binary independently of event.Decode) and go
// through a real capture file, as `ctprobe report` reads them.
package streamtest

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
	"unsafe"

	"github.com/ctprobe/ctprobe/tracer/capture"
	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/probe"
)

// Options shape the mix.
type Options struct {
	Flows       int     // ordinary new flows (each: CT_IN new, NAT DST, NAT SRC, CONFIRM)
	Established float64 // CT_IN events of established flows per new flow (mean)
	Races       float64 // per new flow, the chance of each race: R1 merged, R3 nat-clash, R4 dropped
	Live        int     // flows alive at once; the oldest then dies and its ct pointer is reused
	Gap         uint64  // mean ns between packets on one CPU
	Seed        uint64
	// ConfirmsOnly records what --all without --timeline records: confirm's
	// exit for every new flow, with its DNS message (read_sender), and for
	// a race the clash and its loser's confirm, sent together. No CT_IN or
	// NAT events, so no established flows either.
	ConfirmsOnly bool
}

// BusyNode is the mix of the benchmarks: about 65% of the events belong to
// new flows, 30% are packets of established flows, and 1% of the new flows
// lose a race of each type (R1, R3, R4). Two CPUs at about 50k packets/s
// each; ct pointers are reused (SLAB_TYPESAFE_BY_RCU) once a flow dies.
func BusyNode() Options {
	return Options{Flows: 20000, Established: 2, Races: 0.01, Live: 12000, Gap: 20000, Seed: 1}
}

// OrdinaryNode is BusyNode without races: the traffic whose steady state
// allocates nothing.
func OrdinaryNode() Options {
	o := BusyNode()
	o.Races = 0
	return o
}

// AllNode is BusyNode as `ctprobe trace --all` records it (ConfirmsOnly):
// one confirm per new flow, 40 % of them DNS queries, and 1 % of the new
// flows losing a race of each type.
func AllNode() Options {
	o := BusyNode()
	o.ConfirmsOnly, o.Established = true, 0
	return o
}

// OrdinaryAllNode is AllNode without races: --all's ordinary events only.
func OrdinaryAllNode() Options {
	o := AllNode()
	o.Races = 0
	return o
}

// Capture is a generated capture and its samples read back.
type Capture struct {
	File    []byte   // the capture file
	Records [][]byte // its samples, read back with capture.NewReader
	Span    uint64   // kernel time the records cover, plus one gap
	Races   map[incident.RaceType]int
	Kinds   [5]int // events by kind
	New     int    // CT_IN events with FlagNew
}

// once is a capture generated once per test binary.
type once struct {
	sync.Once
	c   *Capture
	err error
}

func (o *once) get(tb testing.TB, opt func() Options) *Capture {
	tb.Helper()
	o.Do(func() { o.c, o.err = Synthesize(opt()) })
	if o.err != nil {
		tb.Fatal(o.err)
	}
	return o.c
}

var busyCap, allCap once

// BusyCapture is BusyNode's capture, generated once per test binary.
func BusyCapture(tb testing.TB) *Capture { return busyCap.get(tb, BusyNode) }

// AllCapture is AllNode's capture, generated once per test binary.
func AllCapture(tb testing.TB) *Capture { return allCap.get(tb, AllNode) }

// Advance moves every record's timestamp by span, so that feeding the
// records again continues the stream where it ended (the same ct pointers
// then start new generations, as reused slab objects do).
func (s *Capture) Advance(records [][]byte) {
	for _, r := range records {
		binary.LittleEndian.PutUint64(r[0:8], binary.LittleEndian.Uint64(r[0:8])+s.Span)
	}
}

// Decoded decodes every record.
func (s *Capture) Decoded(tb testing.TB) []event.Event {
	evs := make([]event.Event, len(s.Records))
	for i, r := range s.Records {
		if err := event.Decode(r, &evs[i]); err != nil {
			tb.Fatal(err)
		}
	}
	return evs
}

// CopyRecords copies the samples, so that a benchmark may advance its own.
func (s *Capture) CopyRecords() [][]byte {
	arena := make([]byte, len(s.Records)*event.Size)
	out := make([][]byte, len(s.Records))
	for i, r := range s.Records {
		out[i] = arena[i*event.Size : (i+1)*event.Size : (i+1)*event.Size]
		copy(out[i], r)
	}
	return out
}

// ---- generator ---------------------------------------------------------

const (
	HostNetns = 4026531840
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
	opt     Options
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
	out     *Capture
}

func Synthesize(opt Options) (*Capture, error) {
	g := &synth{
		opt:    opt,
		rng:    rand.New(rand.NewPCG(opt.Seed, 0x5eed)),
		nextCT: 0xffff888004000000,
		skb:    0xffff888100000000,
		port:   32768,
		out:    &Capture{Races: map[incident.RaceType]int{}},
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

var (
	dnsNames = []string{
		"kube-dns.kube-system.svc.cluster.local",
		"api.payments.svc.cluster.local",
		"redis-master.cache.svc.cluster.local",
		"www.example.com",
		"s3.eu-west-1.amazonaws.com",
	}
	comms      = []string{"curl", "java", "python3", "envoy", "node", "getent", "nginx", "coredns"}
	DNSService = netip.MustParseAddr("10.96.0.10")
	dnsEps     = []netip.Addr{netip.MustParseAddr("10.244.2.11"), netip.MustParseAddr("10.244.3.12")}
	v6Client   = netip.MustParseAddr("fd00:10::1")
)

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
		f.orig = Tuple(17, src, port, DNSService, 53)
		f.dnat = netip.AddrPortFrom(dnsEps[g.rng.IntN(len(dnsEps))], 53)
		g.dns(f)
	case r < 40: // host-network DNS
		f.hook, f.sock = event.HookLocalOut, true
		f.comm = "systemd-resolve"
		f.orig = Tuple(17, netip.MustParseAddr(nodeIP), port, DNSService, 53)
		f.dnat = netip.AddrPortFrom(dnsEps[g.rng.IntN(len(dnsEps))], 53)
		g.dns(f)
	case r < 75: // pod to a ClusterIP over TCP
		f.hook = event.HookPreRouting
		f.origin = g.rng.IntN(10) < 8
		f.sock = f.origin
		svc := netip.AddrFrom4([4]byte{10, 96, byte(g.rng.IntN(4)), byte(1 + g.rng.IntN(200))})
		f.orig = Tuple(6, src, port, svc, 8080)
		f.dnat = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 244, byte(2 + g.rng.IntN(6)), byte(2 + g.rng.IntN(200))}), 8080)
	case r < 85: // IPv6, host process to a v6 ClusterIP
		f.hook, f.sock = event.HookLocalOut, true
		svc := netip.AddrFrom16([16]byte{0xfd, 0x00, 0, 0x96, 14: byte(g.rng.IntN(4)), 15: byte(1 + g.rng.IntN(200))})
		f.orig = Tuple(6, v6Client, port, svc, 443)
		f.dnat = netip.AddrPortFrom(netip.AddrFrom16([16]byte{0xfd, 0x00, 0x02, 0x44, 14: byte(2 + g.rng.IntN(6)), 15: byte(2 + g.rng.IntN(200))}), 8443)
	default: // pod egress, masqueraded (port kept)
		f.hook = event.HookPreRouting
		f.origin = g.rng.IntN(10) < 8
		f.sock = f.origin
		dst := netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + g.rng.IntN(250))})
		f.orig = Tuple(6, src, port, dst, 443)
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
	f.pre = Reply(f.orig)
	f.afterDst = f.pre
	if f.dnat.IsValid() {
		f.afterDst = setReplySrc(f.pre, f.dnat)
	}
	f.reply = f.afterDst
	if f.snat {
		if !masq.IsValid() {
			masq = netip.AddrPortFrom(netip.MustParseAddr(nodeIP), Net16(f.orig.Sport))
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

// finish writes the records to a capture in ring-buffer order and reads
// them back.
func (g *synth) finish() (*Capture, error) {
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
	s.File = buf.Bytes()
	s.Span = last - first + g.opt.Gap
	rd, err := capture.NewReader(bytes.NewReader(s.File))
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
			s.Records = append(s.Records, arena[start:len(arena):len(arena)])
		}
	}
	return s, nil
}

// Churn gives every record the network namespace netns and moves its
// sender's pid and tgid on by shift: fed again, the stream comes from new
// pods and processes, as on a node where pods churn for weeks.
func Churn(records [][]byte, netns, shift uint32) {
	var e probe.BPFEvent
	nsAt, pidAt := unsafe.Offsetof(e.Netns), unsafe.Offsetof(e.PidTgid)
	le := binary.LittleEndian
	for _, r := range records {
		le.PutUint32(r[nsAt:], netns)
		if pt := le.Uint64(r[pidAt:]); pt != 0 {
			le.PutUint64(r[pidAt:], pt+uint64(shift)<<32+uint64(shift))
		}
	}
}
