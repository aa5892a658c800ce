// Package dnsmsg is ctprobe's DNS wire format (RFC 1035): it parses the
// first question of a message that may be cut short (Parse), parses a whole
// message (ParseMessage), and builds the queries and answers the lab sends
// (BuildQuery, BuildResponse).
//
// Parse is for captures: the BPF side copies only the first 64 bytes of a
// UDP payload (PAYLOAD_MAX in bpf/ctprobe.h), so a long name is often cut,
// and Parse returns the part it has and says so.
//
// Both parsers read bytes from the network and from capture files. They never
// panic and do a bounded amount of work for any input: compression pointers
// must point strictly backwards past every earlier jump of the name (at most
// 16 jumps), and names are capped at the RFC 1035 limit of 255 bytes. Parse
// allocates one string (AppendParse none); ParseMessage allocates per
// question and answer record, and counts are checked against the bytes
// present before they size anything.
//
// Names are given in presentation form without the trailing dot
// ("kube-dns.kube-system.svc.cluster.local"; "." for the root). Bytes outside
// printable ASCII, '.' inside a label and '\' are escaped as \DDD, \. and \\.
// The builders take names in the same form (a trailing dot is allowed), so a
// parsed name builds back to the same bytes.
package dnsmsg

import (
	"encoding/binary"
	"errors"
)

// HeaderLen is the size of the fixed DNS header.
const HeaderLen = 12

// MaxLen is the longest DNS message: over TCP its length travels in 16 bits,
// and a UDP payload is shorter still.
const MaxLen = 65535

// Record types and class (RFC 1035, RFC 3596).
const (
	TypeA    uint16 = 1
	TypeAAAA uint16 = 28
	ClassIN  uint16 = 1
)

// Header flag bits (RFC 1035 §4.1.1).
const (
	FlagQR uint16 = 0x8000 // a response
	FlagRD uint16 = 0x0100 // recursion desired
	FlagRA uint16 = 0x0080 // recursion available

	opcodeMask    = 0x7800
	rcodeMask     = 0x000f
	rcodeServFail = 2
)

// Errors that mean the bytes are not a usable DNS message.
var (
	ErrShort      = errors.New("dns: shorter than the 12-byte header")
	ErrNoQuestion = errors.New("dns: no question")
	ErrName       = errors.New("dns: malformed name")
	ErrTruncated  = errors.New("dns: message truncated")
	ErrTooLong    = errors.New("dns: message longer than 65535 bytes")
)

func opcode(flags uint16) uint8 { return uint8((flags & opcodeMask) >> 11) }
func rcode(flags uint16) uint8  { return uint8(flags & rcodeMask) }

// Query is the header and first question of a DNS message.
type Query struct {
	ID       uint16
	Response bool  // QR bit: a response, not a query
	Opcode   uint8 // 0 QUERY
	RCode    uint8
	QDCount  uint16
	// Name is the first question's name (see the package comment for its
	// form).
	Name  string
	Type  uint16 // 1 A, 28 AAAA, ... (0 when cut off)
	Class uint16 // 1 IN (0 when cut off)
	// Truncated: the buffer ended inside the question. Name holds the labels
	// (and the part of a label) that were present; Type and Class are valid
	// only if HasType.
	Truncated bool
	HasType   bool
}

// Parse reads the header and the first question of b. A buffer cut inside
// the question is not an error: the Query has Truncated set.
func Parse(b []byte) (Query, error) {
	var buf [MaxNameText]byte
	q, name, err := AppendParse(buf[:0], b)
	if err == nil {
		q.Name = string(name)
	}
	return q, err
}

// AppendParse is Parse without its one allocation, for a caller that
// writes the name out at once (an event line): the name goes to dst, which
// it returns, and Query.Name is left empty. dst never grows with
// MaxNameText bytes of room.
func AppendParse(dst, b []byte) (Query, []byte, error) {
	var q Query
	if len(b) < HeaderLen {
		return q, dst, ErrShort
	}
	flags := binary.BigEndian.Uint16(b[2:])
	q.ID = binary.BigEndian.Uint16(b)
	q.Response = flags&FlagQR != 0
	q.Opcode = opcode(flags)
	q.RCode = rcode(flags)
	q.QDCount = binary.BigEndian.Uint16(b[4:])
	if q.QDCount == 0 {
		return q, dst, ErrNoQuestion
	}

	start := len(dst)
	dst, off, complete, err := readName(dst, b, HeaderLen)
	if err != nil {
		return q, dst[:start], err
	}
	if !complete {
		q.Truncated = true
		return q, dst, nil
	}
	if len(dst) == start {
		dst = append(dst, '.') // the root
	}
	if off+2 > len(b) {
		q.Truncated = true
		return q, dst, nil
	}
	q.Type = binary.BigEndian.Uint16(b[off:])
	q.HasType = true
	if off+4 > len(b) {
		q.Truncated = true
		return q, dst, nil
	}
	q.Class = binary.BigEndian.Uint16(b[off+2:])
	return q, dst, nil
}
