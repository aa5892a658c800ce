package incident

// Builders that make event.Event values the way bpf/ctprobe.bpf.c fills
// them, for flows through a Kubernetes-like DNAT/SNAT setup.

import (
	"net/netip"
	"slices"
	"sort"
	"testing"

	"github.com/ctprobe/ctprobe/tracer/dnsmsg"
	"github.com/ctprobe/ctprobe/tracer/event"
)

const (
	udp = 17
	tcp = 6

	netnsHost = 4026531840
)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// ap is "ip:port".
func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func tuple(proto uint8, src, dst string) event.Tuple {
	a, b := ap(src), ap(dst)
	return event.Tuple{Src: a.Addr(), Dst: b.Addr(), SrcPort: a.Port(), DstPort: b.Port(), Proto: proto}
}

// dnsPayload is a stub resolver's query for name as the probe keeps it: the
// first 64 bytes of the UDP payload.
func dnsPayload(id uint16, name string, qtype uint16) ([64]byte, uint16) {
	var p [64]byte
	q, _ := dnsmsg.BuildQuery(id, name, qtype)
	return p, uint16(copy(p[:], q))
}

// flow is one packet that creates a ct: who sent it, its ORIGINAL tuple,
// and the NAT its ct gets.
type flow struct {
	ct       uint64
	cpu      uint32
	pid, tid uint32
	comm     string
	hook     uint8
	netns    uint32
	orig     event.Tuple
	dnat     netip.AddrPort // zero: DST null binding
	snat     netip.AddrPort // zero: SRC null binding (keeps the source)
	cookie   uint64         // socket cookie, 0: no socket on the skb
	dnsID    uint16
	dnsType  uint16
	dnsName  string
	gut      bool // NAT events come from get_unique_tuple
}

func (f *flow) base(kind event.Kind, t uint64) event.Event {
	ev := event.Event{Kind: kind, Time: t, CPU: f.cpu, PID: f.pid, TID: f.tid, Netns: f.netns, CT: f.ct, Hook: event.HookNone, SKB: 0xffff888000100000 + f.ct&0xffff}
	copy(ev.Comm[:], f.comm)
	if f.hook == event.HookPreRouting {
		// Forwarded: softirq, the idle task or whoever was interrupted.
		ev.PID, ev.TID = 0, 0
		ev.Flags |= event.FlagSoftirqKey
		ev.Comm = [16]byte{}
		copy(ev.Comm[:], "swapper/1")
	}
	return ev
}

// sock puts the flow's socket on an event whose skb carries one.
func (f *flow) sock(ev *event.Event) {
	if f.cookie != 0 {
		ev.Flags |= event.FlagSock
		ev.Sock = event.Socket{Cookie: f.cookie, Inode: uint32(f.cookie), Family: 2, State: 7, Port: f.orig.SrcPort}
	}
}

func (f *flow) preReply() event.Tuple { return invert(f.orig) }

func (f *flow) dnatReply() event.Tuple {
	r := f.preReply()
	if f.dnat.IsValid() {
		r.Src, r.SrcPort = f.dnat.Addr(), f.dnat.Port()
	}
	return r
}

// reply is the REPLY tuple after both bindings.
func (f *flow) reply() event.Tuple {
	r := f.dnatReply()
	if f.snat.IsValid() {
		r.Dst, r.DstPort = f.snat.Addr(), f.snat.Port()
	}
	return r
}

func (f *flow) status() uint64 {
	s := uint64(event.StatusConfirmed | event.StatusSrcNATDone | event.StatusDstNATDone)
	if f.dnat.IsValid() {
		s |= event.StatusDstNAT
	}
	if f.snat.IsValid() {
		s |= event.StatusSrcNAT
	}
	return s
}

func (f *flow) in(t uint64) event.Event {
	ev := f.base(event.CTIn, t)
	ev.Flags |= event.FlagNew
	ev.Hook = f.hook
	ev.CTInfo = 2
	ev.Verdict = event.VerdictAccept
	ev.Orig, ev.Reply = f.orig, f.preReply()
	f.sock(&ev)
	if f.dnsName != "" {
		ev.Payload, ev.PayloadLen = dnsPayload(f.dnsID, f.dnsName, f.dnsType)
	}
	return ev
}

// established is a CT_IN of a later packet of the ct (not new).
func (f *flow) established(t uint64) event.Event {
	ev := f.base(event.CTIn, t)
	ev.Hook = f.hook
	ev.Orig, ev.Reply = f.orig, f.reply()
	ev.Status = f.status()
	return ev
}

func (f *flow) nat(t uint64, manip uint8, before, after event.Tuple) event.Event {
	ev := f.base(event.NAT, t)
	ev.Aux = manip
	ev.Orig = f.orig
	ev.Before, ev.Reply = before, after
	if f.gut {
		ev.Flags |= event.FlagNATGUT
		ev.Before, ev.Reply = invert(before), invert(after)
	}
	if before != after {
		ev.Flags |= event.FlagNATChanged
	}
	return ev
}

func (f *flow) natDst(t uint64) event.Event {
	ev := f.nat(t, event.ManipDst, f.preReply(), f.dnatReply())
	if f.dnat.IsValid() {
		ev.Range = event.NATRange{MinAddr: f.dnat.Addr(), MaxAddr: f.dnat.Addr(), MinPort: f.dnat.Port(), MaxPort: f.dnat.Port(), Flags: event.RangeMapIPs | event.RangeProtoSpecified}
	}
	return ev
}

func (f *flow) natSrc(t uint64) event.Event {
	return f.nat(t, event.ManipSrc, f.dnatReply(), f.reply())
}

// natSrcMoved is a SRC binding that moved the source port to port.
func (f *flow) natSrcMoved(t uint64, port uint16) event.Event {
	after := f.reply()
	after.DstPort = port
	return f.nat(t, event.ManipSrc, f.dnatReply(), after)
}

func (f *flow) confirm(t uint64, verdict uint32, after uint64, status uint64) event.Event {
	ev := f.base(event.Confirm, t)
	ev.Verdict = verdict
	ev.Orig, ev.Reply = f.orig, f.reply()
	ev.OtherCT = after
	ev.Status = status
	f.sock(&ev)
	return ev
}

// inserted is a normal insert.
func (f *flow) inserted(t uint64) event.Event {
	return f.confirm(t, event.VerdictAccept, f.ct, f.status())
}

func (f *flow) merged(t uint64, w *flow) event.Event {
	return f.confirm(t, event.VerdictAccept, w.ct, w.status())
}

func (f *flow) natClash(t uint64) event.Event {
	return f.confirm(t, event.VerdictAccept, f.ct, f.status()|event.StatusNATClash|event.StatusFixedTimeout)
}

func (f *flow) dropped(t uint64) event.Event {
	s := f.status() &^ event.StatusConfirmed // era G: set only after the insert
	return f.confirm(t, event.VerdictDrop, f.ct, s)
}

// clash is nf_ct_resolve_clash entered with L's skb and W's node dir.
func clash(t uint64, l, w *flow, dir uint8) event.Event {
	ev := l.base(event.Clash, t)
	ev.CT, ev.OtherCT = l.ct, w.ct
	ev.Orig, ev.Reply = w.orig, w.reply()
	ev.Status = w.status()
	ev.Netns = w.netns
	ev.Aux = dir
	return ev
}

// byTime is the --all stream: every event as it happened, in time order.
func byTime(evs ...event.Event) []event.Event {
	out := slices.Clone(evs)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time < out[j].Time })
	return out
}

// timing is when each stage of a two-packet race happens (kernel ns).
type timing struct {
	w     [4]uint64 // W's CT_IN, DST NAT, SRC NAT, confirm (inserted)
	l     [3]uint64 // L's CT_IN, DST NAT, SRC NAT
	clash uint64
}

// race builds a clash as the kernel reports it: W is inserted, L clashes
// with it (dir: which of W's hash nodes matched) and ends with lConf. It
// returns the --all stream, in time order, and the incident-mode replay.
func race(w, l *flow, tm timing, dir uint8, lConf event.Event) (all, rep []event.Event) {
	wIn, wDst, wSrc, wConf := w.in(tm.w[0]), w.natDst(tm.w[1]), w.natSrc(tm.w[2]), w.inserted(tm.w[3])
	lIn, lDst, lSrc := l.in(tm.l[0]), l.natDst(tm.l[1]), l.natSrc(tm.l[2])
	cl := clash(tm.clash, l, w, dir)
	return byTime(wIn, lIn, wDst, lDst, wSrc, lSrc, wConf, cl, lConf),
		replay(history{&lIn, &lSrc, &lDst, nil}, &cl, &history{&wIn, &wSrc, &wDst, &wConf}, lConf)
}

// history is one ct's stored history in --timeline (struct history).
type history struct {
	in, src, dst, conf *event.Event
}

// replay is what confirm_exit writes for a race, in its order: L's CT_IN,
// NAT SRC, NAT DST (manip order, not time order), the CLASH, W's history,
// then L's own confirm.
func replay(l history, cl *event.Event, w *history, lconf event.Event) []event.Event {
	var out []event.Event
	put := func(h history, extra event.Flags) {
		for _, e := range []*event.Event{h.in, h.src, h.dst, h.conf} {
			if e != nil {
				ev := *e
				ev.Flags |= event.FlagHistory | extra
				out = append(out, ev)
			}
		}
	}
	put(l, 0)
	if cl != nil {
		ev := *cl
		ev.Flags |= event.FlagHistory
		out = append(out, ev)
	}
	if w != nil {
		put(*w, event.FlagWinner)
	}
	return append(out, lconf)
}

// feed runs events through c and collects the incidents, then flushes.
func feed(t *testing.T, c *Correlator, evs []event.Event) []Incident {
	t.Helper()
	var out []Incident
	for i := range evs {
		out = append(out, c.Add(&evs[i])...)
	}
	return append(out, c.Flush()...)
}

// interleave merges two streams alternately, as two CPUs writing to one
// ring buffer.
func interleave(a, b []event.Event) []event.Event {
	var out []event.Event
	for i := 0; i < len(a) || i < len(b); i++ {
		if i < len(a) {
			out = append(out, a[i])
		}
		if i < len(b) {
			out = append(out, b[i])
		}
	}
	return out
}

// Kubernetes-like cast: a pod resolving through the kube-dns ClusterIP.
const (
	podA      = "10.244.1.2"
	podB      = "10.244.1.3"
	clusterIP = "10.96.0.10:53"
	endpoint1 = "10.244.2.1:53"
	endpoint2 = "10.244.2.2:53"
	nodeIP    = "10.0.0.1"
	dnsName   = "kube-dns.kube-system.svc.cluster.local"
)

// glibcPair is the A and AAAA queries glibc sends in parallel from one
// socket: two threads, two cts, same ORIGINAL tuple.
func glibcPair(wCT, lCT uint64, wEndpoint, lEndpoint string) (w, l *flow) {
	orig := tuple(udp, podA+":41000", clusterIP)
	w = &flow{ct: wCT, cpu: 0, pid: 4242, tid: 4242, comm: "getent", hook: event.HookLocalOut, netns: netnsHost,
		orig: orig, dnat: ap(wEndpoint), cookie: 0x1f, dnsID: 0x1111, dnsType: 1, dnsName: dnsName}
	l = &flow{ct: lCT, cpu: 1, pid: 4242, tid: 4243, comm: "getent", hook: event.HookLocalOut, netns: netnsHost,
		orig: orig, dnat: ap(lEndpoint), cookie: 0x1f, dnsID: 0x2222, dnsType: 28, dnsName: dnsName}
	return w, l
}
