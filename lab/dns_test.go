package lab

import (
	"net/netip"
	"testing"

	"github.com/ctprobe/ctprobe/tracer/dnsmsg"
)

func TestAnswer(t *testing.T) {
	for _, tc := range []struct {
		qtype uint16
		want  netip.Addr // invalid: no record
	}{{dnsmsg.TypeA, AnswerA}, {dnsmsg.TypeAAAA, AnswerAAAA}, {16, netip.Addr{}}} {
		raw, err := dnsmsg.BuildQuery(4242, DefaultName, tc.qtype)
		if err != nil {
			t.Fatal(err)
		}
		q, err := dnsmsg.ParseMessage(raw)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := Answer(&q, 7)
		if err != nil {
			t.Fatal(err)
		}
		m, err := dnsmsg.ParseMessage(resp)
		if err != nil || m.ID != 4242 || !m.Response() || m.RCode() != 0 || len(m.Questions) != 1 || m.Questions[0] != q.Questions[0] {
			t.Fatalf("type %d: %+v, %v", tc.qtype, m, err)
		}
		if !tc.want.IsValid() {
			if len(m.Answers) != 0 {
				t.Errorf("type %d: answers %+v", tc.qtype, m.Answers)
			}
			continue
		}
		if len(m.Answers) != 1 {
			t.Fatalf("type %d: answers %+v", tc.qtype, m.Answers)
		}
		a := m.Answers[0]
		got, _ := netip.AddrFromSlice(a.Data)
		if a.Type != tc.qtype || a.Class != dnsmsg.ClassIN || a.TTL != 7 || got != tc.want {
			t.Errorf("answer %+v (%v)", a, got)
		}
	}
}

// The client reads back both parts of every TTL a responder can send: each
// endpoint number and each port, the extremes included.
func TestAnswerTTLParts(t *testing.T) {
	for endpoint := 1; endpoint <= MaxEndpoints; endpoint++ {
		for _, port := range []uint16{0, 1, 53, 255, 256, 32768, 65535} {
			e, p := answerTTLParts(AnswerTTL(endpoint, port))
			if e != uint32(endpoint) || p != port {
				t.Fatalf("AnswerTTL(%d, %d) reads back as %d, %d", endpoint, port, e, p)
			}
		}
	}
}
