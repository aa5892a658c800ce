package event

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/ctprobe/ctprobe/tracer/probe"
)

// encode lays a record out with encoding/binary, independently of Decode's
// unsafe copy, as the kernel writes it on a little-endian machine.
func encode(t testing.TB, r *probe.BPFEvent) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.LittleEndian, r); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func be(v uint16) uint16 { return v<<8 | v>>8 }

func v4(s string) [16]uint8 {
	var out [16]uint8
	a := netip.MustParseAddr(s).As4()
	copy(out[:], a[:])
	return out
}

// A DNAT'd DNS query as nf_nat_setup_info's exit reports it: pod
// 10.244.1.2:41000 to ClusterIP 10.96.0.10:53, endpoint 10.244.2.1:53.
func natRecord() *probe.BPFEvent {
	r := &probe.BPFEvent{
		Ts: 123456789, Ct: 0xffff888001234500, Skb: 0xffff888005678900,
		PidTgid: uint64(4242)<<32 | 4243, Cgroup: 77, Status: 0x1a8, Netns: 4026532201,
		Cpu: 1, Kind: uint8(probe.BPFEventKindEVENT_NAT), Hook: HookNone, Aux: 1,
		Flags: uint16(probe.BPFEventFlagEVENT_F_NAT_CHANGED),
	}
	copy(r.Comm[:], []int8{'c', 't', 'l', 'a', 'b'})
	r.Orig = probe.BPFTuple{Src: v4("10.244.1.2"), Dst: v4("10.96.0.10"), Sport: be(41000), Dport: be(53), L3num: 2, Protonum: 17}
	r.Before = probe.BPFTuple{Src: v4("10.96.0.10"), Dst: v4("10.244.1.2"), Sport: be(53), Dport: be(41000), L3num: 2, Protonum: 17, Dir: 1}
	r.Reply = probe.BPFTuple{Src: v4("10.244.2.1"), Dst: v4("10.244.1.2"), Sport: be(53), Dport: be(41000), L3num: 2, Protonum: 17, Dir: 1}
	r.Range = probe.BPFNatRange{MinAddr: v4("10.244.2.1"), MaxAddr: v4("10.244.2.1"), Flags: RangeMapIPs | RangeProtoSpecified, MinProto: be(53), MaxProto: be(53)}
	return r
}

func TestDecodeNAT(t *testing.T) {
	var ev Event
	if err := Decode(encode(t, natRecord()), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Kind != NAT || ev.Aux != ManipDst || ev.Flags&FlagNATChanged == 0 {
		t.Errorf("kind/manip/flags: %v %d %#x", ev.Kind, ev.Aux, ev.Flags)
	}
	if ev.PID != 4242 || ev.TID != 4243 || ev.CommString() != "ctlab" || ev.CPU != 1 || ev.Netns != 4026532201 {
		t.Errorf("task: %+v", ev)
	}
	if got := ev.Orig.String(); got != "udp 10.244.1.2:41000->10.96.0.10:53" {
		t.Errorf("orig %s", got)
	}
	if got := ev.Before.SrcString(); got != "10.96.0.10:53" {
		t.Errorf("before %s", got)
	}
	if got := ev.Reply.String(); got != "udp 10.244.2.1:53->10.244.1.2:41000" {
		t.Errorf("reply %s", got)
	}
	if ev.Range.MinAddr != netip.MustParseAddr("10.244.2.1") || ev.Range.MinPort != 53 || ev.Range.Flags&RangeMapIPs == 0 {
		t.Errorf("range %+v", ev.Range)
	}
	if ev.Sock != (Socket{}) {
		t.Errorf("socket decoded without FlagSock: %+v", ev.Sock)
	}
}

func TestDecodeConfirmIPv6WithSocket(t *testing.T) {
	src := netip.MustParseAddr("fd00:244::2").As16()
	dst := netip.MustParseAddr("fd00:96::10").As16()
	r := &probe.BPFEvent{
		Kind: uint8(probe.BPFEventKindEVENT_CONFIRM), Ct: 1 << 40, OtherCt: 2 << 40, Ret: 1,
		Flags:    uint16(probe.BPFEventFlagEVENT_F_SOCK),
		SkCookie: 0x1f, SkIno: 12345, SkFamily: 10, SkState: 7, SkPort: 41000,
		Orig:       probe.BPFTuple{Src: src, Dst: dst, Sport: be(41000), Dport: be(53), L3num: 10, Protonum: 17},
		PayloadLen: 200, // more than the buffer: must be clamped
	}
	var ev Event
	if err := Decode(encode(t, r), &ev); err != nil {
		t.Fatal(err)
	}
	if got := ev.Orig.SrcString(); got != "[fd00:244::2]:41000" {
		t.Errorf("v6 endpoint %s", got)
	}
	if ev.Sock != (Socket{Cookie: 0x1f, Inode: 12345, Family: 10, State: 7, Port: 41000}) {
		t.Errorf("socket %+v", ev.Sock)
	}
	if ev.OtherCT != 2<<40 || ev.Verdict != VerdictAccept {
		t.Errorf("confirm fields %+v", ev)
	}
	if int(ev.PayloadLen) != len(ev.Payload) {
		t.Errorf("payload length %d not clamped to %d", ev.PayloadLen, len(ev.Payload))
	}
}

// A record at any address decodes the same: a capture file's records are not
// aligned, and where unaligned loads are allowed (unalignedOK) Decode reads
// them in place.
func TestDecodeUnaligned(t *testing.T) {
	raw := encode(t, natRecord())
	var want Event
	if err := Decode(raw, &want); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(raw)+8)
	for off := 1; off < 8; off++ {
		copy(buf[off:], raw)
		var got Event
		if err := Decode(buf[off:off+len(raw)], &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("at offset %d:\n got %+v\nwant %+v", off, got, want)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	var ev Event
	good := encode(t, natRecord())
	if err := Decode(good[:Size-1], &ev); !errors.Is(err, ErrShort) {
		t.Errorf("short record: %v", err)
	}
	bad := natRecord()
	bad.Kind = 9
	if err := Decode(encode(t, bad), &ev); !errors.Is(err, ErrKind) {
		t.Errorf("bad kind: %v", err)
	}
}

// The Go record size must be the C struct's size in the compiled object.
func TestRecordSizeMatchesBTF(t *testing.T) {
	spec, err := probe.LoadBPF()
	if err != nil {
		t.Fatal(err)
	}
	var st *btf.Struct
	if err := spec.Types.TypeByName("event", &st); err != nil {
		t.Fatal(err)
	}
	if int(st.Size) != Size {
		t.Fatalf("struct event is %d bytes in BTF, %d in Go", st.Size, Size)
	}
}

// Decode sets every field, so that decoding into a reused Event leaves
// nothing of the previous record: an Event with every field set to
// something else decodes to the same as a zero one.
func TestDecodeOverwritesEveryField(t *testing.T) {
	for _, r := range []*probe.BPFEvent{natRecord(), {Kind: uint8(probe.BPFEventKindEVENT_CT_IN)}} {
		raw := encode(t, r)
		var want, got Event
		if err := Decode(raw, &want); err != nil {
			t.Fatal(err)
		}
		dirty(reflect.ValueOf(&got).Elem())
		if err := Decode(raw, &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("decoding into a used Event:\n got %+v\nwant %+v", got, want)
		}
	}
}

// dirty sets every field of v to a value that decoding a record never gives.
func dirty(v reflect.Value) {
	switch {
	case v.Type() == reflect.TypeFor[netip.Addr]():
		v.Set(reflect.ValueOf(netip.MustParseAddr("fe80::1%dirty")))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			dirty(v.Field(i))
		}
	case reflect.Array:
		for i := range v.Len() {
			dirty(v.Index(i))
		}
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(0x5a5a5a5a5a5a5a5a & (1<<(8*v.Type().Size()) - 1))
	default:
		panic("dirty: unhandled " + v.Type().String())
	}
}

func TestDecodeAllocatesNothing(t *testing.T) {
	raw := encode(t, natRecord())
	var ev Event
	if n := testing.AllocsPerRun(100, func() { _ = Decode(raw, &ev) }); n != 0 {
		t.Errorf("Decode allocates %.0f times per record", n)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(encode(f, natRecord()))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		var ev Event
		if err := Decode(raw, &ev); err != nil {
			return
		}
		// Whatever decodes must format without panicking.
		_ = ev.Orig.String() + ev.Reply.String() + ev.Before.String() + ev.CommString() + ev.Kind.String()
	})
}

func BenchmarkDecode(b *testing.B) {
	raw := encode(b, natRecord())
	var ev Event
	b.ReportAllocs()
	for b.Loop() {
		if err := Decode(raw, &ev); err != nil {
			b.Fatal(err)
		}
	}
}

// Every protocol number has a name, without an allocation (each event line
// prints one); the named ones, and only those, read back.
func TestProtoNames(t *testing.T) {
	for p, want := range map[uint8]string{6: "tcp", 17: "udp", 58: "icmpv6", 0: "proto-0", 253: "proto-253"} {
		if got := ProtoName(p); got != want {
			t.Errorf("ProtoName(%d) = %q, want %q", p, got, want)
		}
	}
	named := 0
	for p := range 256 {
		name := ProtoName(uint8(p))
		n, ok := ProtoNumber(name)
		if ok {
			named++
		}
		if ok != !strings.HasPrefix(name, "proto-") || ok && n != uint8(p) {
			t.Errorf("ProtoNumber(%q) = %d, %v", name, n, ok)
		}
	}
	if _, ok := ProtoNumber(""); ok || named != 8 {
		t.Errorf("%d named protocols; ProtoNumber(\"\") %v", named, ok)
	}
	if a := testing.AllocsPerRun(100, func() { _ = ProtoName(253) }); a != 0 {
		t.Errorf("ProtoName: %v allocations", a)
	}
}
