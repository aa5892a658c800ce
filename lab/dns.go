package lab

import (
	"net/netip"

	"github.com/ctprobe/ctprobe/tracer/dnsmsg"
)

// The addresses every responder answers with.
var (
	AnswerA    = netip.MustParseAddr("10.1.2.3")
	AnswerAAAA = netip.MustParseAddr("fd00::1:2:3")
)

// Answer is a lab responder's reply to query q (see dnsmsg.BuildResponse):
// for an IN A / AAAA question one record, AnswerA / AnswerAAAA with the
// given TTL; for other types no record (NODATA).
func Answer(q *dnsmsg.Message, ttl uint32) ([]byte, error) {
	var rdata []byte
	if len(q.Questions) == 1 && q.Questions[0].Class == dnsmsg.ClassIN {
		switch q.Questions[0].Type {
		case dnsmsg.TypeA:
			a := AnswerA.As4()
			rdata = a[:]
		case dnsmsg.TypeAAAA:
			a := AnswerAAAA.As16()
			rdata = a[:]
		}
	}
	return dnsmsg.BuildResponse(q, ttl, rdata)
}
