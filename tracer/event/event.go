// Package event decodes the records ctprobe's BPF programs write to the ring
// buffer (struct event in bpf/ctprobe.h). It is the only place that knows the
// byte layout: live tracing, capture files and tests all decode through it.
package event

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"unsafe"

	"github.com/ctprobe/ctprobe/tracer/probe"
)

// Kind is the probe point that produced an event.
type Kind uint8

const (
	CTIn    = Kind(probe.BPFEventKindEVENT_CT_IN)   // nf_conntrack_in returned
	NAT     = Kind(probe.BPFEventKindEVENT_NAT)     // a NAT binding was chosen
	Clash   = Kind(probe.BPFEventKindEVENT_CLASH)   // nf_ct_resolve_clash: a winner holds our tuple
	Confirm = Kind(probe.BPFEventKindEVENT_CONFIRM) // __nf_conntrack_confirm returned
)

func (k Kind) String() string {
	switch k {
	case CTIn:
		return "ct_in"
	case NAT:
		return "nat"
	case Clash:
		return "clash"
	case Confirm:
		return "confirm"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Flags qualify an event (enum event_flag in bpf/ctprobe.h).
type Flags uint16

const (
	FlagNew        = Flags(probe.BPFEventFlagEVENT_F_NEW)
	FlagSock       = Flags(probe.BPFEventFlagEVENT_F_SOCK)
	FlagHistory    = Flags(probe.BPFEventFlagEVENT_F_HISTORY)
	FlagNATGUT     = Flags(probe.BPFEventFlagEVENT_F_NAT_GUT)
	FlagNATChanged = Flags(probe.BPFEventFlagEVENT_F_NAT_CHANGED)
	FlagWinner     = Flags(probe.BPFEventFlagEVENT_F_WINNER)
	FlagSoftirqKey = Flags(probe.BPFEventFlagEVENT_F_SOFTIRQ_KEY)
	FlagOrigin     = Flags(probe.BPFEventFlagEVENT_F_ORIGIN)
	FlagLookup     = Flags(probe.BPFEventFlagEVENT_F_LOOKUP)
	FlagLocal      = Flags(probe.BPFEventFlagEVENT_F_LOCAL)
)

// Netfilter verdicts (include/uapi/linux/netfilter.h).
const (
	VerdictDrop   = 0
	VerdictAccept = 1
)

// Conntrack status bits (IPS_*, include/uapi/linux/netfilter/nf_conntrack_common.h).
const (
	StatusSeenReply    = 1 << 1  // IPS_SEEN_REPLY
	StatusAssured      = 1 << 2  // IPS_ASSURED
	StatusConfirmed    = 1 << 3  // IPS_CONFIRMED: not a success signal since 2025 (set late)
	StatusSrcNAT       = 1 << 4  // IPS_SRC_NAT
	StatusDstNAT       = 1 << 5  // IPS_DST_NAT
	StatusSrcNATDone   = 1 << 7  // IPS_SRC_NAT_DONE
	StatusDstNATDone   = 1 << 8  // IPS_DST_NAT_DONE
	StatusDying        = 1 << 9  // IPS_DYING: killed, on its way out of the table
	StatusFixedTimeout = 1 << 10 // IPS_FIXED_TIMEOUT
	StatusNATClash     = 1 << 12 // IPS_NAT_CLASH (5.6+): inserted in the reply direction only
)

// Netfilter hooks (enum nf_inet_hooks), the value of Event.Hook at CT_IN;
// HookNone on other kinds.
const (
	HookPreRouting  = 0
	HookLocalIn     = 1
	HookForward     = 2
	HookLocalOut    = 3 // conntrack runs in the sending task's context
	HookPostRouting = 4
	HookNone        = 0xff
)

// ctinfo values (enum ip_conntrack_info), Event.CTInfo.
const (
	CTEstablished      = 0
	CTRelated          = 1
	CTNew              = 2
	CTEstablishedReply = 3
	CTRelatedReply     = 4
	CTUntracked        = 7
)

// NAT manip types (enum nf_nat_manip_type).
const (
	ManipSrc = 0
	ManipDst = 1
)

// NF_NAT_RANGE_* flags (include/uapi/linux/netfilter/nf_nat.h).
const (
	RangeMapIPs          = 1 << 0
	RangeProtoSpecified  = 1 << 1
	RangeProtoRandom     = 1 << 2
	RangePersistent      = 1 << 3
	RangeProtoRandomFull = 1 << 4
	RangeProtoOffset     = 1 << 5
	RangeNetmap          = 1 << 6
)

// Tuple is a conntrack tuple. Ports are in host byte order; for ICMP, SrcPort
// is the echo id and DstPort is type<<8|code, as the kernel stores them.
type Tuple struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Proto            uint8
}

// Socket is the sending socket, when the skb carried one.
type Socket struct {
	Cookie uint64
	Inode  uint32
	Family uint8
	State  uint8
	Port   uint16
}

// NATRange is what the NAT rule asked for (struct nf_nat_range2).
type NATRange struct {
	MinAddr, MaxAddr netip.Addr
	MinPort, MaxPort uint16
	Flags            uint32
}

// Event is one decoded probe record. See struct event in bpf/ctprobe.h for
// what each field means for each Kind.
type Event struct {
	Kind    Kind
	Flags   Flags
	Time    uint64 // kernel monotonic ns (bpf_ktime_get_ns)
	CPU     uint32
	PID     uint32 // thread group id
	TID     uint32
	Comm    [16]byte
	Cgroup  uint64
	Netns   uint32
	CT      uint64 // the ct the event is about (CLASH, CONFIRM: the loser candidate)
	OtherCT uint64 // CONFIRM: ct on the skb afterwards; CLASH: the winner
	SKB     uint64
	Status  uint64
	Mark    uint32
	Zone    uint16
	Hook    uint8 // NF_INET_* (CT_IN only; 0xff otherwise)
	CTInfo  uint8
	Aux     uint8  // NAT: manip type; CLASH: matching direction of the winner's node
	Verdict uint32 // CT_IN, CONFIRM: NF_DROP 0 / NF_ACCEPT 1
	Sock    Socket // valid when Flags has FlagSock
	Orig    Tuple  // CLASH: the winner's
	Reply   Tuple  // NAT: after the binding; CLASH: the winner's
	Before  Tuple  // NAT: REPLY before the binding
	Range   NATRange
	// Payload is the start of the UDP payload at CT_IN for port 53 (a DNS
	// message), PayloadLen bytes of it valid.
	Payload    [64]byte
	PayloadLen uint16
}

// Size is the size of one record in bytes.
const Size = int(unsafe.Sizeof(probe.BPFEvent{}))

// ErrShort and ErrKind report records that cannot be an event.
var (
	ErrShort = errors.New("record too short")
	ErrKind  = errors.New("unknown event kind")
)

// Decode decodes one ring buffer record. It does not allocate.
func Decode(raw []byte, ev *Event) error {
	if len(raw) < Size {
		return fmt.Errorf("decode event: %w: %d bytes, want %d", ErrShort, len(raw), Size)
	}
	// Read the record in place (it holds no pointers, so any address will
	// do where unaligned loads are allowed); copy it where they are not.
	var copied probe.BPFEvent
	r := (*probe.BPFEvent)(unsafe.Pointer(unsafe.SliceData(raw)))
	if !unalignedOK && uintptr(unsafe.Pointer(r))%unsafe.Alignof(copied) != 0 {
		*(*[Size]byte)(unsafe.Pointer(&copied)) = [Size]byte(raw[:Size])
		r = &copied
	}
	k := Kind(r.Kind)
	if k < CTIn || k > Confirm {
		return fmt.Errorf("decode event: %w %d", ErrKind, r.Kind)
	}
	// Field by field rather than *ev = Event{...}, which builds the whole
	// event on the stack first and then copies it.
	ev.Kind = k
	ev.Flags = Flags(r.Flags)
	ev.Time = r.Ts
	ev.CPU = r.Cpu
	ev.PID = uint32(r.PidTgid >> 32)
	ev.TID = uint32(r.PidTgid)
	ev.Comm = *(*[16]byte)(unsafe.Pointer(&r.Comm))
	ev.Cgroup = r.Cgroup
	ev.Netns = r.Netns
	ev.CT = r.Ct
	ev.OtherCT = r.OtherCt
	ev.SKB = r.Skb
	ev.Status = r.Status
	ev.Mark = r.Mark
	ev.Zone = r.Zone
	ev.Hook = r.Hook
	ev.CTInfo = r.Ctinfo
	ev.Aux = r.Aux
	ev.Verdict = r.Ret
	if ev.Flags&FlagSock != 0 {
		ev.Sock = Socket{Cookie: r.SkCookie, Inode: r.SkIno, Family: r.SkFamily, State: r.SkState, Port: r.SkPort}
	} else {
		ev.Sock = Socket{}
	}
	tuple(&ev.Orig, &r.Orig)
	tuple(&ev.Reply, &r.Reply)
	tuple(&ev.Before, &r.Before)
	natRange(&ev.Range, &r.Range, r.Orig.L3num)
	ev.Payload = r.Payload
	ev.PayloadLen = min(r.PayloadLen, uint16(len(r.Payload)))
	return nil
}

// unalignedOK: the architectures this package builds for (those bpf2go
// generated probe's types for) load from any address. On arm64 ordinary
// loads from normal memory may be unaligned (Linux runs user space with
// alignment checks off, SCTLR_EL1.A = 0), which Go's compiler relies on too
// (unalignedOK in cmd/compile/internal/ssa/config.go); only atomic and
// exclusive accesses need alignment, and the decoder makes none.
const unalignedOK = runtime.GOARCH == "amd64" || runtime.GOARCH == "386" || runtime.GOARCH == "arm64"

// CommString is the task name without its NUL padding.
func (e *Event) CommString() string { return CommName(&e.Comm) }

// InTask says whether an event's task fields (PID, TID, Comm) are the task
// that sent its packet rather than whatever the probe interrupted: at
// CT_IN, a sender found through the skb (FlagOrigin) or conntrack run at
// LOCAL_OUT in the sender's own context; at CONFIRM, a packet made on this
// host that carries its socket. An entry and exit paired per CPU
// (FlagSoftirqKey) ran in softirq, whose task fields are not the sender's.
// NAT and CLASH events do not say.
func InTask(k Kind, flags Flags, hook uint8) bool {
	switch k {
	case CTIn:
		return flags&FlagOrigin != 0 || hook == HookLocalOut && flags&FlagSoftirqKey == 0
	case Confirm:
		return flags&FlagLocal != 0 && flags&FlagSock != 0 && flags&FlagSoftirqKey == 0
	}
	return false
}

// CommName is a task name (task_struct.comm) without its NUL padding.
func CommName(b *[16]byte) string {
	if i := bytes.IndexByte(b[:], 0); i >= 0 {
		return string(b[:i])
	}
	return string(b[:])
}

// Address families (include/linux/socket.h).
const (
	afInet  = 2
	afInet6 = 10
)

func addr(b *[16]uint8, family uint16) netip.Addr {
	switch family {
	case afInet:
		return netip.AddrFrom4([4]byte(b[:4]))
	case afInet6:
		return netip.AddrFrom16(*b)
	}
	return netip.Addr{}
}

// be16 turns a __be16 read as a little-endian host integer into host order.
func be16(v uint16) uint16 { return v<<8 | v>>8 }

func tuple(out *Tuple, t *probe.BPFTuple) {
	out.Src = addr(&t.Src, t.L3num)
	out.Dst = addr(&t.Dst, t.L3num)
	out.SrcPort = be16(t.Sport)
	out.DstPort = be16(t.Dport)
	out.Proto = t.Protonum
}

func natRange(out *NATRange, r *probe.BPFNatRange, family uint16) {
	out.MinAddr = addr(&r.MinAddr, family)
	out.MaxAddr = addr(&r.MaxAddr, family)
	out.MinPort = be16(r.MinProto)
	out.MaxPort = be16(r.MaxProto)
	out.Flags = r.Flags
}

// Protocol numbers that have names in output (include/uapi/linux/in.h).
var protoNames = [256]string{1: "icmp", 6: "tcp", 17: "udp", 33: "dccp", 47: "gre", 58: "icmpv6", 132: "sctp", 136: "udplite"}

// protoText is ProtoName's answer for every number, made once: every event
// line names its protocol, and a map lookup or a formatted string there
// cost more than anything else in the line.
var protoText = func() (t [256]string) {
	for p := range t {
		t[p] = protoNames[p]
		if t[p] == "" {
			t[p] = fmt.Sprintf("proto-%d", p)
		}
	}
	return t
}()

// ProtoName names an IP protocol number ("udp", or "proto-253").
func ProtoName(p uint8) string { return protoText[p] }

// ProtoNumber is the inverse of ProtoName for the named protocols.
func ProtoNumber(name string) (uint8, bool) {
	for n, s := range protoNames {
		if s != "" && s == name {
			return uint8(n), true
		}
	}
	return 0, false
}

// Endpoint formats an address and port as "ip:port" ("[v6]:port").
func Endpoint(a netip.Addr, port uint16) string {
	return netip.AddrPortFrom(a, port).String()
}

// SrcString and DstString are the tuple's ends as "ip:port".
func (t Tuple) SrcString() string { return Endpoint(t.Src, t.SrcPort) }
func (t Tuple) DstString() string { return Endpoint(t.Dst, t.DstPort) }

// String is "udp 10.244.1.2:41000->10.96.0.10:53".
func (t Tuple) String() string {
	return ProtoName(t.Proto) + " " + t.SrcString() + "->" + t.DstString()
}
