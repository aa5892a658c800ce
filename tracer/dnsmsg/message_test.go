package dnsmsg

import (
	"bytes"
	"encoding/hex"
	"errors"
	"runtime"
	"strings"
	"testing"
)

func TestBuildQueryBytes(t *testing.T) {
	q, err := BuildQuery(0xbeef, "lab.example.", TypeAAAA)
	if err != nil {
		t.Fatal(err)
	}
	want := "beef" + "0100" + "0001" + "0000" + "0000" + "0000" + // id, RD, QD=1
		"036c6162" + "076578616d706c65" + "00" + // lab.example.
		"001c" + "0001" // AAAA IN
	if got := hex.EncodeToString(q); got != want {
		t.Fatalf("query %s\n want %s", got, want)
	}
	// Without the final dot: the same bytes.
	q2, _ := BuildQuery(0xbeef, "lab.example", TypeAAAA)
	if !bytes.Equal(q, q2) {
		t.Error("trailing dot changes the query")
	}
}

func TestBuildQueryRejects(t *testing.T) {
	for _, name := range []string{
		"a..b", ".a", "a\\", `a\1`, `a\12x`, `a\256`,
		strings.Repeat("x", 64) + ".example", strings.Repeat("abcdefghi.", 26),
	} {
		if _, err := BuildQuery(1, name, TypeA); err == nil {
			t.Errorf("%q accepted", name)
		}
	}
}

// 255 bytes on the wire, the final zero included, is the longest name: the
// parsers and the builder agree on it.
func TestNameLengthLimit(t *testing.T) {
	label := strings.Repeat("a", 63)
	max := strings.Join([]string{label, label, label, strings.Repeat("b", 61)}, ".") // 4*64 - 2 + 1 = 255
	b, err := BuildQuery(1, max, TypeA)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(b) - HeaderLen - 4; n != maxNameLen {
		t.Fatalf("wire name of %d bytes", n)
	}
	if q, err := Parse(b); err != nil || q.Name != max {
		t.Fatalf("Parse: %v", err)
	}
	if _, err := BuildQuery(1, max+"b", TypeA); err == nil {
		t.Fatal("256-byte name built")
	}
	over := append(b[:HeaderLen+maxNameLen-1:HeaderLen+maxNameLen-1], 1, 'c', 0, 0, 1, 0, 1)
	if _, err := Parse(over); !errors.Is(err, ErrName) {
		t.Errorf("Parse of a 257-byte name: %v", err)
	}
	if _, err := ParseMessage(over); !errors.Is(err, ErrName) {
		t.Errorf("ParseMessage of a 257-byte name: %v", err)
	}
}

// Escaped names build to their bytes and parse back to the same text.
func TestNameEscapesRoundTrip(t *testing.T) {
	for name, wire := range map[string]string{
		`a\.b.c`:        "\x03a.b\x01c\x00",
		`x\\y`:          "\x03x\\y\x00",
		`\000\255\007A`: "\x04\x00\xff\x07A\x00",
		`\a\b`:          "\x02ab\x00",
	} {
		b, err := BuildQuery(1, name, TypeA)
		if err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		if got := string(b[HeaderLen : len(b)-4]); got != wire {
			t.Errorf("%q: wire %q, want %q", name, got, wire)
		}
		m, err := ParseMessage(b)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := BuildQuery(1, m.Questions[0].Name, TypeA)
		if !bytes.Equal(b, again) {
			t.Errorf("%q parses as %q, which builds %q", name, m.Questions[0].Name, again)
		}
	}
}

func TestResponseRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		qtype uint16
		rdata []byte
	}{{TypeA, []byte{10, 1, 2, 3}}, {TypeAAAA, bytes.Repeat([]byte{0xfd}, 16)}} {
		raw, _ := BuildQuery(4242, "lab.example.", tc.qtype)
		q, err := ParseMessage(raw)
		if err != nil {
			t.Fatal(err)
		}
		if q.ID != 4242 || q.Response() || len(q.Questions) != 1 || q.Questions[0] != (Question{"lab.example", tc.qtype, ClassIN}) {
			t.Fatalf("parsed query %+v", q)
		}
		resp, err := BuildResponse(&q, 7, tc.rdata)
		if err != nil {
			t.Fatal(err)
		}
		m, err := ParseMessage(resp)
		if err != nil {
			t.Fatal(err)
		}
		if m.ID != 4242 || !m.Response() || m.RCode() != 0 || m.Opcode() != 0 || m.Flags&FlagRD == 0 || m.Flags&FlagRA == 0 {
			t.Errorf("header %+v", m)
		}
		if len(m.Questions) != 1 || m.Questions[0] != q.Questions[0] {
			t.Errorf("question not echoed: %+v", m.Questions)
		}
		if len(m.Answers) != 1 {
			t.Fatalf("answers %+v", m.Answers)
		}
		a := m.Answers[0]
		if a.Name != "lab.example" || a.Type != tc.qtype || a.Class != ClassIN || a.TTL != 7 || !bytes.Equal(a.Data, tc.rdata) {
			t.Errorf("answer %+v", a)
		}
	}
}

func TestResponseNoDataAndServfail(t *testing.T) {
	raw, _ := BuildQuery(1, "lab.example.", 16) // TXT
	q, _ := ParseMessage(raw)
	resp, _ := BuildResponse(&q, 1, nil)
	m, err := ParseMessage(resp)
	if err != nil || len(m.Answers) != 0 || m.RCode() != 0 || len(m.Questions) != 1 {
		t.Errorf("TXT: %+v %v", m, err)
	}
	q.Questions = nil
	resp, _ = BuildResponse(&q, 1, nil)
	m, err = ParseMessage(resp)
	if err != nil || m.RCode() != rcodeServFail {
		t.Errorf("no question: rcode %d %v", m.RCode(), err)
	}
}

func TestParseCompressionAndErrors(t *testing.T) {
	// A response whose answer name is a pointer to offset 12.
	raw, _ := BuildQuery(9, "a.b.", TypeA)
	q, _ := ParseMessage(raw)
	resp, _ := BuildResponse(&q, 1, []byte{1, 2, 3, 4})
	if !bytes.Contains(resp, []byte{0xc0, 12}) {
		t.Fatal("response does not use a compression pointer")
	}

	hdr := func(qd, an byte) []byte { return []byte{0, 1, 0x81, 0x80, 0, qd, 0, an, 0, 0, 0, 0} }
	for name, tc := range map[string]struct {
		msg []byte
		err error
	}{
		"short header":     {[]byte{0, 1, 2}, ErrShort},
		"count lies":       {hdr(9, 0), ErrTruncated},
		"pointer to self":  {append(hdr(1, 0), 0xc0, 12, 0, 1, 0, 1), ErrName},
		"pointer forward":  {append(hdr(1, 0), 0xc0, 14, 0, 0, 1, 0, 1), ErrName},
		"label past end":   {append(hdr(1, 0), 10, 'a', 'b', 0, 0, 0), ErrTruncated},
		"reserved label":   {append(hdr(1, 0), 0x80, 0, 0, 1, 0, 1), ErrName},
		"rdata past end":   {append(append(hdr(1, 1), 0, 0, 1, 0, 1), 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 9, 1, 2), ErrTruncated},
		"missing qtype":    {append(hdr(1, 0), 1, 'a', 0, 0, 1), ErrTruncated},
		"truncated answer": {append(append(hdr(1, 1), 0, 0, 1, 0, 1), 0, 0, 1, 0, 0, 0, 0, 0, 0, 0), ErrTruncated},
		"too long":         {make([]byte, MaxLen+1), ErrTooLong},
	} {
		if _, err := ParseMessage(tc.msg); !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, want %v", name, err, tc.err)
		}
	}
	// The root name.
	m, err := ParseMessage(append(hdr(1, 0), 0, 0, 2, 0, 1))
	if err != nil || m.Questions[0].Name != "." {
		t.Errorf("root: %+v %v", m, err)
	}
}

// The most a message can make ParseMessage allocate: every answer a pointer
// to a different suffix of a 255-byte name of escaped bytes, so that no two
// names share a string. It stays within about 100 bytes per input byte.
func TestParseMessageAllocBound(t *testing.T) {
	msg := []byte{0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0}
	starts := []int{}
	for range 4 {
		starts = append(starts, len(msg))
		msg = append(msg, 62)
		msg = append(msg, bytes.Repeat([]byte{0x01}, 62)...)
	}
	msg = append(msg, 0, 0, 1, 0, 1)
	an := 0
	for len(msg)+12 <= MaxLen {
		// Alternate between the suffixes so that consecutive names differ.
		msg = append(msg, 0xc0|byte(starts[an%4]>>8), byte(starts[an%4]), 0, 1, 0, 1, 0, 0, 0, 0, 0, 0)
		an++
	}
	msg[6], msg[7] = byte(an>>8), byte(an)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	m, err := ParseMessage(msg)
	runtime.ReadMemStats(&after)
	if err != nil || len(m.Answers) != an {
		t.Fatalf("%d answers, %v", len(m.Answers), err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 100*uint64(len(msg)) {
		t.Errorf("%d bytes allocated for a %d-byte message", got, len(msg))
	}
}

func FuzzParseMessage(f *testing.F) {
	for _, qt := range []uint16{TypeA, TypeAAAA, 16} {
		raw, _ := BuildQuery(77, "lab.example.", qt)
		f.Add(raw)
		q, _ := ParseMessage(raw)
		resp, _ := BuildResponse(&q, 3, []byte{1, 2, 3, 4})
		f.Add(resp)
	}
	f.Add([]byte{0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1})
	f.Add([]byte{0, 1, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'a', '.', 0x80, 0, 0, 1, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMessage(data)
		if err != nil {
			return
		}
		for _, q := range m.Questions {
			if len(q.Name) > MaxNameText || q.Name == "" || strings.HasSuffix(q.Name, ".") && q.Name != "." && !strings.HasSuffix(q.Name, `\.`) {
				t.Fatalf("bad question name %q", q.Name)
			}
		}
		for _, a := range m.Answers {
			if len(a.Data) > len(data) {
				t.Fatalf("rdata longer than the message")
			}
		}
		if len(m.Questions) != 1 {
			return
		}
		// Whatever parses builds, and parses back the same: the lab's
		// responder answers any query.
		q := m.Questions[0]
		raw, err := BuildQuery(m.ID, q.Name, q.Type)
		if err != nil {
			t.Fatalf("question %q does not build: %v", q.Name, err)
		}
		back, err := ParseMessage(raw)
		if err != nil || back.Questions[0].Name != q.Name || back.Questions[0].Type != q.Type {
			t.Fatalf("question %q builds %x, which parses as %+v, %v", q.Name, raw, back, err)
		}
		resp, err := BuildResponse(&m, 1, []byte{1, 2, 3, 4})
		if err != nil {
			t.Fatalf("BuildResponse: %v", err)
		}
		r, err := ParseMessage(resp)
		if err != nil || !r.Response() || r.ID != m.ID || len(r.Questions) != 1 || r.Questions[0] != q ||
			len(r.Answers) != 1 || r.Answers[0].Name != q.Name || r.Opcode() != m.Opcode() {
			t.Fatalf("response %+v, %v to %+v", r, err, m)
		}
	})
}
