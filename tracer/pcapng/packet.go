package pcapng

import (
	"encoding/binary"
	"net/netip"
)

// Packet is what a conntrack tuple says of one packet: its addresses,
// ports (for ICMP: the echo id, and type << 8 | code), protocol, and
// payload (for UDP: the DNS message, where one was captured).
type Packet struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Proto            uint8
	Payload          []byte
}

// Protocol numbers.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
)

// Bytes builds the packet as it would have been on the wire: an IPv4 or
// IPv6 header, then a UDP, TCP or ICMP header with valid checksums, then
// the payload. Other protocols get the IP header and payload only. TCP
// segments are SYNs: a new conntrack entry starts with one.
func (p *Packet) Bytes() []byte {
	var l4 []byte
	switch p.Proto {
	case protoUDP:
		l4 = make([]byte, 8, 8+len(p.Payload))
		binary.BigEndian.PutUint16(l4[0:], p.SrcPort)
		binary.BigEndian.PutUint16(l4[2:], p.DstPort)
		binary.BigEndian.PutUint16(l4[4:], uint16(8+len(p.Payload)))
		l4 = append(l4, p.Payload...)
	case protoTCP:
		l4 = make([]byte, 20)
		binary.BigEndian.PutUint16(l4[0:], p.SrcPort)
		binary.BigEndian.PutUint16(l4[2:], p.DstPort)
		l4[12] = 5 << 4 // data offset: 5 words
		l4[13] = 0x02   // SYN
		binary.BigEndian.PutUint16(l4[14:], 65535)
	case protoICMP, protoICMPv6:
		// conntrack keeps the echo id in the source "port", and type and
		// code in the destination's.
		l4 = make([]byte, 8, 8+len(p.Payload))
		l4[0], l4[1] = byte(p.DstPort>>8), byte(p.DstPort)
		binary.BigEndian.PutUint16(l4[4:], p.SrcPort)
		l4 = append(l4, p.Payload...)
	default:
		l4 = append([]byte(nil), p.Payload...)
	}
	if p.Src.Is4() {
		return p.ipv4(l4)
	}
	return p.ipv6(l4)
}

func (p *Packet) ipv4(l4 []byte) []byte {
	h := make([]byte, 20, 20+len(l4))
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(l4)))
	h[6] = 0x40 // don't fragment
	h[8] = 64   // TTL
	h[9] = p.Proto
	src, dst := p.Src.As4(), p.Dst.As4()
	copy(h[12:], src[:])
	copy(h[16:], dst[:])
	binary.BigEndian.PutUint16(h[10:], checksum(0, h))
	pseudo := sum(0, src[:])
	pseudo = sum(pseudo, dst[:])
	pseudo += uint32(p.Proto) + uint32(len(l4))
	p.l4Checksum(l4, pseudo)
	return append(h, l4...)
}

func (p *Packet) ipv6(l4 []byte) []byte {
	h := make([]byte, 40, 40+len(l4))
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(l4)))
	h[6] = p.Proto
	h[7] = 64 // hop limit
	src, dst := p.Src.As16(), p.Dst.As16()
	copy(h[8:], src[:])
	copy(h[24:], dst[:])
	pseudo := sum(0, src[:])
	pseudo = sum(pseudo, dst[:])
	pseudo += uint32(p.Proto) + uint32(len(l4))
	p.l4Checksum(l4, pseudo)
	return append(h, l4...)
}

// l4Checksum fills the transport checksum over the pseudo-header sum
// (ICMPv4 has none: its checksum covers the message alone).
func (p *Packet) l4Checksum(l4 []byte, pseudo uint32) {
	switch p.Proto {
	case protoUDP:
		c := checksum(pseudo, l4)
		if c == 0 {
			c = 0xffff // 0 means "no checksum" in UDP
		}
		binary.BigEndian.PutUint16(l4[6:], c)
	case protoTCP:
		binary.BigEndian.PutUint16(l4[16:], checksum(pseudo, l4))
	case protoICMP:
		binary.BigEndian.PutUint16(l4[2:], checksum(0, l4))
	case protoICMPv6:
		binary.BigEndian.PutUint16(l4[2:], checksum(pseudo, l4))
	}
}

// sum adds b as big-endian 16-bit words to s (RFC 1071).
func sum(s uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

// checksum is the Internet checksum of b over the partial sum s.
func checksum(s uint32, b []byte) uint16 {
	s = sum(s, b)
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}
