package dnsmsg

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// query is a stub resolver's query (BuildQuery) for a name the test knows
// to be valid.
func query(id uint16, name string, qtype uint16) []byte {
	b, err := BuildQuery(id, name, qtype)
	if err != nil {
		panic(err)
	}
	return b
}

func TestParseQuery(t *testing.T) {
	b := query(0xbeef, "kube-dns.kube-system.svc.cluster.local", 28)
	q, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	want := Query{ID: 0xbeef, QDCount: 1, Name: "kube-dns.kube-system.svc.cluster.local", Type: 28, Class: 1, HasType: true}
	if q != want {
		t.Fatalf("got %+v\nwant %+v", q, want)
	}
}

func TestParseResponseBits(t *testing.T) {
	b := query(7, "example.com", 1)
	b[2] = 0x80 | 2<<3 // QR, opcode 2
	b[3] = 3           // NXDOMAIN
	q, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if !q.Response || q.Opcode != 2 || q.RCode != 3 || q.Name != "example.com" || q.Type != 1 {
		t.Fatalf("got %+v", q)
	}
}

func TestParseRoot(t *testing.T) {
	q, err := Parse(query(1, ".", 2))
	if err != nil || q.Name != "." || q.Type != 2 || q.Truncated {
		t.Fatalf("got %+v, %v", q, err)
	}
}

// The BPF side captures 64 bytes of payload: a long search-domain name is
// cut, and Parse must return what is there.
func TestParseTruncatedAt64(t *testing.T) {
	full := query(0x1234, "my-backend-service.my-namespace.svc.cluster.local.example.internal", 1)
	if len(full) <= 64 {
		t.Fatalf("test name too short: %d bytes", len(full))
	}
	q, err := Parse(full[:64])
	if err != nil {
		t.Fatal(err)
	}
	if !q.Truncated || q.HasType || q.Type != 0 {
		t.Fatalf("want truncated without type, got %+v", q)
	}
	if q.ID != 0x1234 || !strings.HasPrefix(q.Name, "my-backend-service.my-namespace.svc.cluster.local.") {
		t.Fatalf("got %+v", q)
	}
	if !strings.HasPrefix("my-backend-service.my-namespace.svc.cluster.local.example.internal", q.Name) {
		t.Fatalf("name %q is not a prefix of the real name", q.Name)
	}
}

func TestParseCutEverywhere(t *testing.T) {
	full := query(0x4242, "a.bc.def", 28)
	name := "a.bc.def"
	for n := 0; n <= len(full); n++ {
		q, err := Parse(full[:n])
		switch {
		case n < HeaderLen:
			if !errors.Is(err, ErrShort) {
				t.Fatalf("len %d: err %v", n, err)
			}
			continue
		case err != nil:
			t.Fatalf("len %d: %v", n, err)
		}
		if q.ID != 0x4242 {
			t.Fatalf("len %d: id %#x", n, q.ID)
		}
		complete := n == len(full)
		if q.Truncated == complete {
			t.Fatalf("len %d: truncated=%v", n, q.Truncated)
		}
		if !strings.HasPrefix(name, q.Name) && q.Name != name {
			t.Fatalf("len %d: name %q", n, q.Name)
		}
		if q.HasType != (n >= len(full)-2) {
			t.Fatalf("len %d: HasType=%v", n, q.HasType)
		}
		if q.HasType && q.Type != 28 {
			t.Fatalf("len %d: type %d", n, q.Type)
		}
	}
}

func TestParseErrors(t *testing.T) {
	noQ := query(1, "a", 1)
	noQ[5] = 0
	if _, err := Parse(noQ); !errors.Is(err, ErrNoQuestion) {
		t.Errorf("qdcount 0: %v", err)
	}
	reserved := append(query(1, ".", 1)[:12], 0x40, 'x')
	if _, err := Parse(reserved); !errors.Is(err, ErrName) {
		t.Errorf("label type 0x40: %v", err)
	}
	long := []byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0}
	for range 5 {
		long = append(long, 63)
		long = append(long, bytes.Repeat([]byte{'a'}, 63)...)
	}
	long = append(long, 0, 0, 1, 0, 1)
	if _, err := Parse(long); !errors.Is(err, ErrName) {
		t.Errorf("name over 255 bytes: %v", err)
	}
}

func TestParsePointers(t *testing.T) {
	// A pointer to itself, and one forward: both rejected, neither loops.
	self := append(query(1, ".", 1)[:12], 0xc0, 12)
	if _, err := Parse(self); !errors.Is(err, ErrName) {
		t.Errorf("self pointer: %v", err)
	}
	fwd := append(query(1, ".", 1)[:12], 0xc0, 14, 1, 'a', 0)
	if _, err := Parse(fwd); !errors.Is(err, ErrName) {
		t.Errorf("forward pointer: %v", err)
	}
	// A backward pointer into the header is followed (bounded): the header
	// bytes 0x00 0x00 at offset 10 read as the root name.
	back := append(query(1, ".", 1)[:12], 0xc0, 10, 0, 28, 0, 1)
	q, err := Parse(back)
	if err != nil || q.Name != "." || q.Type != 28 || q.Class != 1 {
		t.Errorf("backward pointer: %+v, %v", q, err)
	}
	// A pointer cut after its first byte.
	cut := append(query(1, ".", 1)[:12], 1, 'a', 0xc0)
	q, err = Parse(cut)
	if err != nil || !q.Truncated || q.Name != "a" {
		t.Errorf("cut pointer: %+v, %v", q, err)
	}
}

func TestParseEscapes(t *testing.T) {
	b := []byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 4, 'a', '.', '\\', 0x07, 0, 0, 1, 0, 1}
	q, err := Parse(b)
	if err != nil || q.Name != `a\.\\\007` {
		t.Fatalf("got %q, %v", q.Name, err)
	}
}

// Parse costs one allocation, the name: render and the correlator call it
// for every DNS payload they show.
func TestParseAllocs(t *testing.T) {
	b := query(0xbeef, "kube-dns.kube-system.svc.cluster.local", 28)
	n := testing.AllocsPerRun(100, func() {
		if _, err := Parse(b); err != nil {
			t.Fatal(err)
		}
	})
	if n > 1 {
		t.Errorf("Parse allocates %v times, want at most 1", n)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(query(0xbeef, "kube-dns.kube-system.svc.cluster.local", 28))
	f.Add(query(1, "example.com", 1)[:20])
	f.Add(query(1, ".", 1))
	f.Add(query(1, `a\.b\.\007`, 1))
	f.Add(append(query(1, ".", 1)[:12], 0xc0, 12))
	f.Add(append(query(1, ".", 1)[:12], 0xc0, 10, 0, 28, 0, 1))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 512 {
			b = b[:512]
		}
		q, err := Parse(b)
		// AppendParse reads the same, its name in the caller's buffer
		// (prefix kept, room enough: no allocation).
		buf := append(make([]byte, 0, 3+MaxNameText), "ab:"...)
		q2, name, err2 := AppendParse(buf, b)
		if err == nil {
			q2.Name = string(name[3:])
		}
		if q2 != q || err2 != err || string(name[:3]) != "ab:" || &name[:1][0] != &buf[:1][0] {
			t.Fatalf("AppendParse: %+v, %q, %v; Parse: %+v, %v", q2, name, err2, q, err)
		}
		if len(b) < HeaderLen {
			if !errors.Is(err, ErrShort) {
				t.Fatalf("short input: err %v", err)
			}
			return
		}
		if q.ID != uint16(b[0])<<8|uint16(b[1]) || q.Response != (b[2]&0x80 != 0) {
			t.Fatalf("header misread: %+v", q)
		}
		if err != nil {
			return
		}
		if len(q.Name) > MaxNameText {
			t.Fatalf("name too long: %d", len(q.Name))
		}
		if !q.Truncated && !q.HasType {
			t.Fatalf("complete question without type: %+v", q)
		}
		for _, c := range []byte(q.Name) {
			if c < 0x21 || c > 0x7e {
				t.Fatalf("unescaped byte %#x in %q", c, q.Name)
			}
		}
		if !q.Truncated {
			// A complete name builds back to the input's bytes, unless
			// it followed a compression pointer.
			w, err := BuildQuery(q.ID, q.Name, q.Type)
			if err != nil {
				t.Fatalf("name %q does not build: %v", q.Name, err)
			}
			w = w[HeaderLen : len(w)-4]
			if !bytes.HasPrefix(b[HeaderLen:], w) && !hasPointerByte(b[HeaderLen:]) {
				t.Fatalf("name %q does not re-encode to the input", q.Name)
			}
		}
		// What a capture cut anywhere holds is a prefix of the whole.
		for n := HeaderLen; n < len(b); n++ {
			p, err := Parse(b[:n])
			if err != nil {
				t.Fatalf("cut at %d: %v (whole: %+v)", n, err, q)
			}
			if p.ID != q.ID || !strings.HasPrefix(q.Name, p.Name) || p.HasType && p.Type != q.Type {
				t.Fatalf("cut at %d: %+v, whole %+v", n, p, q)
			}
			if !p.Truncated && p != q {
				t.Fatalf("cut at %d: complete %+v, whole %+v", n, p, q)
			}
		}
		// A whole message's first question reads the same both ways.
		if m, err := ParseMessage(b); err == nil && len(m.Questions) > 0 {
			mq := m.Questions[0]
			if q.Truncated || q.Name != mq.Name || q.Type != mq.Type || q.Class != mq.Class || q.RCode != m.RCode() || q.Opcode != m.Opcode() {
				t.Fatalf("Parse %+v, ParseMessage %+v", q, m)
			}
		}
	})
}

func hasPointerByte(b []byte) bool {
	for _, c := range b {
		if c&0xc0 == 0xc0 {
			return true
		}
	}
	return false
}
