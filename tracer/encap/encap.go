// Package encap reads the flow inside a tunnel packet from the first bytes
// of its UDP payload: a VXLAN (RFC 7348) or Geneve (RFC 8926) header, the
// inner Ethernet header (with up to two VLAN tags), the inner IPv4 or IPv6
// header and, when they were captured, the inner ports. Its input comes
// from the network: every length is checked, nothing is trusted.
package encap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/ctprobe/ctprobe/tracer/event"
)

// Kind is the tunnel protocol.
type Kind uint8

const (
	VXLAN Kind = iota + 1
	Geneve
)

func (k Kind) String() string {
	switch k {
	case VXLAN:
		return "VXLAN"
	case Geneve:
		return "Geneve"
	}
	return "tunnel"
}

// Flow is the inner flow of one tunnel packet. Ports are set only when
// HasPorts (the capture reached the inner UDP/TCP/SCTP header).
type Flow struct {
	Valid    bool
	Kind     Kind
	VNI      uint32
	Src, Dst netip.Addr
	Proto    uint8
	SrcPort  uint16
	DstPort  uint16
	HasPorts bool
}

func (f Flow) String() string {
	if !f.Valid {
		return ""
	}
	if f.HasPorts {
		return fmt.Sprintf("%s VNI %d: %s %s → %s", f.Kind, f.VNI, event.ProtoName(f.Proto),
			event.Endpoint(f.Src, f.SrcPort), event.Endpoint(f.Dst, f.DstPort))
	}
	return fmt.Sprintf("%s VNI %d: %s %s → %s", f.Kind, f.VNI, event.ProtoName(f.Proto), f.Src, f.Dst)
}

// ErrShort: the payload ends before the inner IP addresses.
var ErrShort = errors.New("encap: payload too short for the inner addresses")

// ErrFormat: the bytes are not a tunnel header this package reads.
var ErrFormat = errors.New("encap: not a VXLAN or Geneve packet carrying IP over Ethernet")

const (
	etherIPv4 = 0x0800
	etherIPv6 = 0x86dd
	etherVLAN = 0x8100
	etherQinQ = 0x88a8
	// Geneve's protocol type for an Ethernet frame (Transparent Ethernet
	// Bridging).
	etherTEB = 0x6558
)

// Parse reads the inner flow of a tunnel packet's UDP payload b.
func Parse(k Kind, b []byte) (Flow, error) {
	f := Flow{Kind: k}
	var frame []byte
	switch k {
	case VXLAN:
		// flags(8: I = 0x08) reserved(24) VNI(24) reserved(8)
		if len(b) < 8 {
			return f, ErrShort
		}
		if b[0]&0x08 == 0 {
			return f, fmt.Errorf("%w: VXLAN I flag not set", ErrFormat)
		}
		f.VNI = uint32(b[4])<<16 | uint32(b[5])<<8 | uint32(b[6])
		frame = b[8:]
	case Geneve:
		// ver(2) optlen(6, 4-byte words) O C rsvd(6) protocol(16) VNI(24) rsvd(8) options
		if len(b) < 8 {
			return f, ErrShort
		}
		if b[0]>>6 != 0 {
			return f, fmt.Errorf("%w: Geneve version %d", ErrFormat, b[0]>>6)
		}
		if p := binary.BigEndian.Uint16(b[2:4]); p != etherTEB {
			return f, fmt.Errorf("%w: Geneve protocol %#04x", ErrFormat, p)
		}
		f.VNI = uint32(b[4])<<16 | uint32(b[5])<<8 | uint32(b[6])
		hdr := 8 + 4*int(b[0]&0x3f)
		if len(b) < hdr {
			return f, ErrShort
		}
		frame = b[hdr:]
	default:
		return f, fmt.Errorf("%w: kind %d", ErrFormat, k)
	}
	// Ethernet: dst(6) src(6) type(2), VLAN tags (4 each) before the type.
	if len(frame) < 14 {
		return f, ErrShort
	}
	off := 12
	typ := binary.BigEndian.Uint16(frame[off:])
	for tags := 0; (typ == etherVLAN || typ == etherQinQ) && tags < 2; tags++ {
		off += 4
		if len(frame) < off+2 {
			return f, ErrShort
		}
		typ = binary.BigEndian.Uint16(frame[off:])
	}
	ip := frame[off+2:]
	var l4 []byte
	switch typ {
	case etherIPv4:
		if len(ip) < 20 {
			return f, ErrShort
		}
		if ip[0]>>4 != 4 || ip[0]&0x0f < 5 {
			return f, fmt.Errorf("%w: bad IPv4 header", ErrFormat)
		}
		f.Proto = ip[9]
		f.Src = netip.AddrFrom4([4]byte(ip[12:16]))
		f.Dst = netip.AddrFrom4([4]byte(ip[16:20]))
		// A fragment after the first carries no ports.
		if binary.BigEndian.Uint16(ip[6:8])&0x1fff == 0 {
			l4 = ip[min(len(ip), 4*int(ip[0]&0x0f)):]
		}
	case etherIPv6:
		if len(ip) < 40 {
			return f, ErrShort
		}
		if ip[0]>>4 != 6 {
			return f, fmt.Errorf("%w: bad IPv6 header", ErrFormat)
		}
		f.Proto = ip[6] // extension headers are not followed: their ports stay unknown
		f.Src = netip.AddrFrom16([16]byte(ip[8:24]))
		f.Dst = netip.AddrFrom16([16]byte(ip[24:40]))
		l4 = ip[40:]
	default:
		return f, fmt.Errorf("%w: ethertype %#04x", ErrFormat, typ)
	}
	f.Valid = true
	switch f.Proto {
	case 6, 17, 132, 136: // TCP, UDP, SCTP, UDPLITE: ports first
		if len(l4) >= 4 {
			f.SrcPort = binary.BigEndian.Uint16(l4[0:2])
			f.DstPort = binary.BigEndian.Uint16(l4[2:4])
			f.HasPorts = true
		}
	}
	return f, nil
}
