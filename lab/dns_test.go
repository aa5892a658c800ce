package lab

import (
	"bytes"
	"encoding/hex"
	"net/netip"
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
	for _, name := range []string{"a..b", strings.Repeat("x", 64) + ".example", strings.Repeat("abcdefghi.", 26)} {
		if _, err := BuildQuery(1, name, TypeA); err == nil {
			t.Errorf("%q accepted", name)
		}
	}
}

func TestResponseRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		qtype uint16
		want  netip.Addr
	}{{TypeA, AnswerA}, {TypeAAAA, AnswerAAAA}} {
		raw, _ := BuildQuery(4242, "lab.example.", tc.qtype)
		q, err := ParseMessage(raw)
		if err != nil {
			t.Fatal(err)
		}
		if q.ID != 4242 || q.Response() || len(q.Questions) != 1 || q.Questions[0] != (Question{"lab.example.", tc.qtype, ClassIN}) {
			t.Fatalf("parsed query %+v", q)
		}
		resp, err := BuildResponse(&q, 7)
		if err != nil {
			t.Fatal(err)
		}
		m, err := ParseMessage(resp)
		if err != nil {
			t.Fatal(err)
		}
		if m.ID != 4242 || !m.Response() || m.RCode() != 0 || m.Flags&flagRD == 0 || m.Flags&flagRA == 0 {
			t.Errorf("header %+v", m)
		}
		if len(m.Questions) != 1 || m.Questions[0] != q.Questions[0] {
			t.Errorf("question not echoed: %+v", m.Questions)
		}
		if len(m.Answers) != 1 {
			t.Fatalf("answers %+v", m.Answers)
		}
		a := m.Answers[0]
		got, _ := netip.AddrFromSlice(a.Data)
		if a.Name != "lab.example." || a.Type != tc.qtype || a.Class != ClassIN || a.TTL != 7 || got != tc.want {
			t.Errorf("answer %+v (%v)", a, got)
		}
	}
}

func TestResponseNoDataAndServfail(t *testing.T) {
	raw, _ := BuildQuery(1, "lab.example.", 16) // TXT
	q, _ := ParseMessage(raw)
	resp, _ := BuildResponse(&q, 1)
	m, err := ParseMessage(resp)
	if err != nil || len(m.Answers) != 0 || m.RCode() != 0 || len(m.Questions) != 1 {
		t.Errorf("TXT: %+v %v", m, err)
	}
	q.Questions = nil
	resp, _ = BuildResponse(&q, 1)
	m, err = ParseMessage(resp)
	if err != nil || m.RCode() != rcodeFail {
		t.Errorf("no question: rcode %d %v", m.RCode(), err)
	}
}

func TestParseCompressionAndErrors(t *testing.T) {
	// A response whose answer name is a pointer to offset 12.
	raw, _ := BuildQuery(9, "a.b.", TypeA)
	q, _ := ParseMessage(raw)
	resp, _ := BuildResponse(&q, 1)
	if !bytes.Contains(resp, []byte{0xc0, 12}) {
		t.Fatal("response does not use a compression pointer")
	}

	hdr := func(qd, an byte) []byte { return []byte{0, 1, 0x81, 0x80, 0, qd, 0, an, 0, 0, 0, 0} }
	for name, msg := range map[string][]byte{
		"short header":     {0, 1, 2},
		"count lies":       hdr(9, 0),
		"pointer to self":  append(hdr(1, 0), 0xc0, 12, 0, 1, 0, 1),
		"pointer forward":  append(hdr(1, 0), 0xc0, 14, 0, 0, 1, 0, 1),
		"label past end":   append(hdr(1, 0), 10, 'a', 'b'),
		"reserved label":   append(hdr(1, 0), 0x80, 0, 0, 1, 0, 1),
		"rdata past end":   append(append(hdr(1, 1), 0, 0, 1, 0, 1), 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 9, 1, 2),
		"missing qtype":    append(hdr(1, 0), 0, 0),
		"truncated answer": append(append(hdr(1, 1), 0, 0, 1, 0, 1), 0, 0, 1),
	} {
		if _, err := ParseMessage(msg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// The root name.
	m, err := ParseMessage(append(hdr(1, 0), 0, 0, 2, 0, 1))
	if err != nil || m.Questions[0].Name != "." {
		t.Errorf("root: %+v %v", m, err)
	}
}

func FuzzParseMessage(f *testing.F) {
	for _, qt := range []uint16{TypeA, TypeAAAA, 16} {
		raw, _ := BuildQuery(77, "lab.example.", qt)
		f.Add(raw)
		q, _ := ParseMessage(raw)
		resp, _ := BuildResponse(&q, 3)
		f.Add(resp)
	}
	f.Add([]byte{0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMessage(data)
		if err != nil {
			return
		}
		for _, q := range m.Questions {
			if len(q.Name) > 256 || !strings.HasSuffix(q.Name, ".") {
				t.Fatalf("bad question name %q", q.Name)
			}
		}
		for _, a := range m.Answers {
			if len(a.Data) > len(data) {
				t.Fatalf("rdata longer than the message")
			}
		}
		// What the responder does with any query must not fail either.
		if !m.Response() {
			if _, err := BuildResponse(&m, 1); err != nil && len(m.Questions) == 1 {
				// Names that parse but do not re-encode (e.g. a label with
				// a dot inside) are an acceptable refusal.
				if !strings.Contains(err.Error(), "dns name") {
					t.Fatalf("BuildResponse: %v", err)
				}
			}
		}
	})
}
