package pcapng

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
)

// Rebuilt packets have valid IP and transport checksums: summing a header
// (and, for UDP and TCP, the pseudo-header) with its checksum gives 0xffff.
func TestPacketChecksums(t *testing.T) {
	for _, p := range []Packet{
		{Src: netip.MustParseAddr("10.244.1.2"), Dst: netip.MustParseAddr("10.96.0.10"), SrcPort: 41000, DstPort: 53, Proto: protoUDP, Payload: []byte("odd payload")},
		{Src: netip.MustParseAddr("10.244.1.2"), Dst: netip.MustParseAddr("10.96.0.1"), SrcPort: 41000, DstPort: 443, Proto: protoTCP},
		{Src: netip.MustParseAddr("fd00::2"), Dst: netip.MustParseAddr("fd00::10"), SrcPort: 41000, DstPort: 53, Proto: protoUDP, Payload: []byte{1, 2, 3}},
		{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), SrcPort: 7, DstPort: 8 << 8, Proto: protoICMP},
	} {
		b := p.Bytes()
		var ipLen int
		var pseudo uint32
		if p.Src.Is4() {
			ipLen = 20
			if fold(sum(0, b[:20])) != 0xffff {
				t.Errorf("%v: IPv4 header checksum", p)
			}
			pseudo = sum(sum(0, b[12:16]), b[16:20])
		} else {
			ipLen = 40
			pseudo = sum(sum(0, b[8:24]), b[24:40])
		}
		if got := int(binary.BigEndian.Uint16(b[2:])); p.Src.Is4() && got != len(b) {
			t.Errorf("%v: total length %d of %d bytes", p, got, len(b))
		}
		l4 := b[ipLen:]
		pseudo += uint32(p.Proto) + uint32(len(l4))
		switch p.Proto {
		case protoUDP, protoTCP:
			if fold(sum(pseudo, l4)) != 0xffff {
				t.Errorf("%v: transport checksum", p)
			}
		case protoICMP:
			if fold(sum(0, l4)) != 0xffff {
				t.Errorf("%v: ICMP checksum", p)
			}
		}
	}
}

func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// Every block's length is a multiple of 4, written at both its ends; an
// unknown interface is refused.
func TestBlocks(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, "test", "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WritePacket(1, time.Unix(1, 5), []byte{0x45, 1, 2}, "a comment"); err != nil {
		t.Fatal(err)
	}
	if err := w.WritePacket(2, time.Now(), nil, ""); err == nil {
		t.Error("interface 2 of 2 accepted")
	}
	b := buf.Bytes()
	var types []uint32
	for len(b) > 0 {
		n := int(binary.LittleEndian.Uint32(b[4:]))
		if n%4 != 0 || n > len(b) || binary.LittleEndian.Uint32(b[n-4:]) != uint32(n) {
			t.Fatalf("block of length %d in %d bytes", n, len(b))
		}
		types = append(types, binary.LittleEndian.Uint32(b))
		b = b[n:]
	}
	if want := []uint32{blockSHB, blockIDB, blockIDB, blockEPB}; !bytes.Equal(u32s(types), u32s(want)) {
		t.Errorf("blocks %x, want %x", types, want)
	}
}

func u32s(v []uint32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, x)
	}
	return b
}
