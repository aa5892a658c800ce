package dnsmsg

import (
	"encoding/binary"
	"fmt"
)

// BuildQuery returns a query like the one glibc's and musl's stub resolvers
// send: one IN question for name (see the package comment for its form),
// recursion desired, no EDNS.
func BuildQuery(id uint16, name string, qtype uint16) ([]byte, error) {
	b := make([]byte, HeaderLen, HeaderLen+len(name)+6)
	binary.BigEndian.PutUint16(b[0:], id)
	binary.BigEndian.PutUint16(b[2:], FlagRD)
	binary.BigEndian.PutUint16(b[4:], 1) // QDCOUNT
	b, err := appendName(b, name)
	if err != nil {
		return nil, err
	}
	b = binary.BigEndian.AppendUint16(b, qtype)
	b = binary.BigEndian.AppendUint16(b, ClassIN)
	return b, nil
}

// BuildResponse answers query q: it echoes the id, the opcode, the RD bit and
// the question, and sets QR and RA. With rdata not nil it adds one record
// (the question's name, type and class, ttl, rdata); with nil it answers
// with no record (NODATA). A query without exactly one question gets
// SERVFAIL, with no question.
func BuildResponse(q *Message, ttl uint32, rdata []byte) ([]byte, error) {
	if len(rdata) > 0xffff {
		return nil, fmt.Errorf("dns: rdata of %d bytes", len(rdata))
	}
	flags := FlagQR | FlagRA | q.Flags&(opcodeMask|FlagRD)
	b := make([]byte, HeaderLen, 64)
	binary.BigEndian.PutUint16(b[0:], q.ID)
	if len(q.Questions) != 1 {
		binary.BigEndian.PutUint16(b[2:], flags|rcodeServFail)
		return b, nil
	}
	qq := q.Questions[0]
	binary.BigEndian.PutUint16(b[2:], flags)
	binary.BigEndian.PutUint16(b[4:], 1)
	if rdata != nil {
		binary.BigEndian.PutUint16(b[6:], 1) // ANCOUNT
	}
	b, err := appendName(b, qq.Name)
	if err != nil {
		return nil, err
	}
	b = binary.BigEndian.AppendUint16(b, qq.Type)
	b = binary.BigEndian.AppendUint16(b, qq.Class)
	if rdata != nil {
		b = append(b, 0xc0, HeaderLen) // pointer to the question's name
		b = binary.BigEndian.AppendUint16(b, qq.Type)
		b = binary.BigEndian.AppendUint16(b, qq.Class)
		b = binary.BigEndian.AppendUint32(b, ttl)
		b = binary.BigEndian.AppendUint16(b, uint16(len(rdata)))
		b = append(b, rdata...)
	}
	return b, nil
}
