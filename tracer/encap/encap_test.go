package encap

import (
	"errors"
	"testing"
)

// frame is an inner Ethernet frame: an IPv4 UDP packet 10.244.1.2:40000 →
// 10.244.2.1:53, with optional VLAN tags before the ethertype.
func frame(tags int) []byte {
	b := []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2}
	for range tags {
		b = append(b, 0x81, 0x00, 0x00, 0x05)
	}
	b = append(b, 0x08, 0x00)
	b = append(b, 0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 244, 1, 2, 10, 244, 2, 1)
	return append(b, 0x9c, 0x40, 0, 53, 0, 20, 0, 0)
}

func vxlan(vni uint32, inner []byte) []byte {
	return append([]byte{0x08, 0, 0, 0, byte(vni >> 16), byte(vni >> 8), byte(vni), 0}, inner...)
}

func geneve(vni uint32, optWords int, inner []byte) []byte {
	b := []byte{byte(optWords), 0, 0x65, 0x58, byte(vni >> 16), byte(vni >> 8), byte(vni), 0}
	b = append(b, make([]byte, 4*optWords)...)
	return append(b, inner...)
}

func ipv6Frame() []byte {
	b := []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x86, 0xdd}
	ip := make([]byte, 40)
	ip[0], ip[6] = 0x60, 6
	ip[8], ip[9], ip[23] = 0xfd, 0x00, 1
	ip[24], ip[25], ip[39] = 0xfd, 0x00, 2
	b = append(b, ip...)
	return append(b, 0x1f, 0x90, 0x01, 0xbb)
}

func TestParse(t *testing.T) {
	cases := []struct {
		name string
		kind Kind
		b    []byte
		want string
	}{
		{"vxlan", VXLAN, vxlan(42, frame(0)), "VXLAN VNI 42: udp 10.244.1.2:40000 → 10.244.2.1:53"},
		{"vxlan, vlan", VXLAN, vxlan(7, frame(1)), "VXLAN VNI 7: udp 10.244.1.2:40000 → 10.244.2.1:53"},
		{"vxlan, qinq", VXLAN, vxlan(7, frame(2)), "VXLAN VNI 7: udp 10.244.1.2:40000 → 10.244.2.1:53"},
		{"geneve with options", Geneve, geneve(0x123456, 2, frame(0)), "Geneve VNI 1193046: udp 10.244.1.2:40000 → 10.244.2.1:53"},
		{"vxlan, ports cut off", VXLAN, vxlan(42, frame(0))[:8+14+20+2], "VXLAN VNI 42: udp 10.244.1.2 → 10.244.2.1"},
		{"vxlan, ipv6", VXLAN, vxlan(1, ipv6Frame()), "VXLAN VNI 1: tcp [fd00::1]:8080 → [fd00::2]:443"},
	}
	for _, c := range cases {
		f, err := Parse(c.kind, c.b)
		if err != nil || !f.Valid || f.String() != c.want {
			t.Errorf("%s: %q %v, want %q", c.name, f.String(), err, c.want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	noI := vxlan(1, frame(0))
	noI[0] = 0
	arp := vxlan(1, frame(0))
	arp[8+12], arp[8+13] = 0x08, 0x06
	badGeneve := geneve(1, 0, frame(0))
	badGeneve[2], badGeneve[3] = 0x08, 0x00
	cases := []struct {
		name string
		kind Kind
		b    []byte
		want error
	}{
		{"empty", VXLAN, nil, ErrShort},
		{"vxlan header only", VXLAN, vxlan(1, nil), ErrShort},
		{"no I flag", VXLAN, noI, ErrFormat},
		{"arp", VXLAN, arp, ErrFormat},
		{"geneve carrying IP, not Ethernet", Geneve, badGeneve, ErrFormat},
		{"geneve options past the end", Geneve, geneve(1, 0, nil)[:8:8], ErrShort},
		{"truncated IPv4", VXLAN, vxlan(1, frame(0))[:8+14+10], ErrShort},
		{"unknown kind", Kind(9), vxlan(1, frame(0)), ErrFormat},
	}
	for _, c := range cases {
		f, err := Parse(c.kind, c.b)
		if !errors.Is(err, c.want) || f.Valid {
			t.Errorf("%s: %+v %v, want %v", c.name, f, err, c.want)
		}
	}
	// Options longer than the capture.
	g := geneve(1, 0, frame(0))
	g[0] = 63
	if _, err := Parse(Geneve, g); !errors.Is(err, ErrShort) {
		t.Errorf("geneve options past the capture: %v", err)
	}
}

// Any bytes: no panic, and a valid flow has addresses of one family.
func FuzzParse(f *testing.F) {
	f.Add(uint8(VXLAN), vxlan(42, frame(0)))
	f.Add(uint8(Geneve), geneve(3, 1, frame(1)))
	f.Add(uint8(VXLAN), vxlan(1, ipv6Frame()))
	f.Fuzz(func(t *testing.T, kind uint8, b []byte) {
		fl, err := Parse(Kind(kind), b)
		if err != nil {
			if fl.Valid {
				t.Fatalf("error %v with a valid flow %+v", err, fl)
			}
			return
		}
		if !fl.Valid || fl.Src.Is4() != fl.Dst.Is4() || !fl.Src.IsValid() {
			t.Fatalf("bad flow %+v", fl)
		}
		_ = fl.String()
	})
}
