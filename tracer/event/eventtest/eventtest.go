// Package eventtest lays out probe records as the kernel writes them (struct
// event, encoded with encoding/binary, independently of event.Decode), and
// captures of them, for the tests of the layers above the decoder: report,
// replay and its fuzzing.
package eventtest

import (
	"bytes"
	"encoding/binary"
	"net/netip"

	"github.com/ctprobe/ctprobe/tracer/capture"
	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/mode"
	"github.com/ctprobe/ctprobe/tracer/probe"
)

// Record lays out one probe record as the kernel writes it.
func Record(r probe.BPFEvent) []byte {
	var b bytes.Buffer
	// A struct of fixed-size fields into a buffer cannot fail.
	_ = binary.Write(&b, binary.LittleEndian, &r)
	return b.Bytes()
}

func be16(v uint16) uint16 { return v<<8 | v>>8 }

// Tuple is a UDP tuple as the kernel stores it (ports in network order).
func Tuple(src string, sport uint16, dst string, dport uint16) probe.BPFTuple {
	var t probe.BPFTuple
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(t.Src[:], s[:])
	copy(t.Dst[:], d[:])
	t.Sport, t.Dport, t.L3num, t.Protonum = be16(sport), be16(dport), 2, 17
	return t
}

// Race3 is what a 5.6+ kernel reports, in --all order, for the i-th of a
// series of lookups 1 ms apart by a process named comm, each with
// conntrack entries of its own, whose A and AAAA queries of one socket are
// DNAT'd to different endpoints: W is confirmed, L clashes with it on the
// original tuple and is inserted reply-only.
func Race3(i int, comm string) [][]byte {
	W, L := 0xffff888004a1b300+uint64(i)<<16, 0xffff888004a1b200+uint64(i)<<16
	orig := Tuple("10.244.1.2", 41000, "10.96.0.10", 53)
	pre := Tuple("10.96.0.10", 53, "10.244.1.2", 41000)
	rw := Tuple("10.244.2.1", 53, "10.244.1.2", 41000)
	rl := Tuple("10.244.2.2", 53, "10.244.1.2", 41000)
	base := probe.BPFEvent{PidTgid: 4242<<32 | 4243, Netns: 4026532201, Hook: event.HookNone,
		Flags: uint16(event.FlagSock), SkCookie: 0x1f, SkIno: 12345, SkFamily: 2, SkPort: 41000}
	for j := 0; j < len(comm) && j < len(base.Comm)-1; j++ {
		base.Comm[j] = int8(comm[j])
	}
	ev := func(ts uint64, kind event.Kind, ct uint64, mod func(*probe.BPFEvent)) []byte {
		e := base
		ts += uint64(i) * 1_000_000
		e.Ts, e.Kind, e.Ct, e.Orig, e.Reply = ts, uint8(kind), ct, orig, pre
		mod(&e)
		return Record(e)
	}
	return [][]byte{
		ev(1000, event.CTIn, W, func(e *probe.BPFEvent) { e.Hook, e.Ctinfo, e.Flags = 3, 2, e.Flags|uint16(event.FlagNew); e.Ret = 1 }),
		ev(1500, event.CTIn, L, func(e *probe.BPFEvent) {
			e.Hook, e.Ctinfo, e.Flags, e.Cpu = 3, 2, e.Flags|uint16(event.FlagNew), 1
			e.Ret = 1
		}),
		ev(2000, event.NAT, W, func(e *probe.BPFEvent) { e.Aux, e.Before, e.Reply, e.Flags = 1, pre, rw, uint16(event.FlagNATChanged) }),
		ev(2100, event.NAT, L, func(e *probe.BPFEvent) {
			e.Aux, e.Before, e.Reply, e.Flags, e.Cpu = 1, pre, rl, uint16(event.FlagNATChanged), 1
		}),
		ev(3000, event.Confirm, W, func(e *probe.BPFEvent) {
			e.Reply, e.OtherCt, e.Ret, e.Status = rw, W, 1, event.StatusConfirmed|event.StatusDstNAT
		}),
		ev(3200, event.Clash, L, func(e *probe.BPFEvent) { e.Reply, e.OtherCt, e.Cpu = rw, W, 1 }),
		ev(3300, event.Confirm, L, func(e *probe.BPFEvent) {
			e.Reply, e.OtherCt, e.Ret, e.Cpu, e.Status = rl, L, 1, 1, event.StatusConfirmed|event.StatusDstNAT|event.StatusNATClash
		}),
	}
}

// Lookups is a capture of `trace --all` that saw n Race3 lookups by comm,
// with a loss noted after the first, on a host named host.
func Lookups(n int, comm, host string) ([]byte, error) {
	var buf bytes.Buffer
	w, err := capture.NewWriter(&buf, capture.Header{RecordLayout: probe.RecordLayout, RecordSize: uint32(event.Size),
		Mode: mode.All.CaptureName(), StartUnixNano: 1e18, Hostname: host})
	if err != nil {
		return nil, err
	}
	for i := range n {
		for _, r := range Race3(i, comm) {
			if err := w.WriteRecord(0, r); err != nil {
				return nil, err
			}
		}
		if i == 0 {
			if err := w.WriteLost(1, 3, "ringbuf"); err != nil {
				return nil, err
			}
		}
	}
	if err := w.Close(capture.Trailer{EndUnixNano: 1e18 + 1e9}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
