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

// AnswerTTL is the TTL of a lab responder's answers: the endpoint's
// number (1 to MaxEndpoints) in the low byte, and above it the source port
// the query arrived from. The client sees every answer come from the
// ClusterIP (the reply is un-DNATed), so this is how it learns which
// endpoint answered and from which port that endpoint saw the query.
func AnswerTTL(endpoint int, fromPort uint16) uint32 {
	return uint32(endpoint)&0xff | uint32(fromPort)<<8
}

// answerTTLParts reads AnswerTTL's two parts back.
func answerTTLParts(ttl uint32) (endpoint uint32, fromPort uint16) {
	return ttl & 0xff, uint16(ttl >> 8)
}

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
