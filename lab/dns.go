package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// DNS record types and class used by the lab (RFC 1035, RFC 3596).
const (
	TypeA    uint16 = 1
	TypeAAAA uint16 = 28
	ClassIN  uint16 = 1
)

// Header flag bits (RFC 1035 §4.1.1).
const (
	flagQR    = 0x8000
	flagRD    = 0x0100
	flagRA    = 0x0080
	opMask    = 0x7800
	rcodeMask = 0x000f
	rcodeFail = 2 // SERVFAIL
)

// The addresses every responder answers with.
var (
	AnswerA    = netip.MustParseAddr("10.1.2.3")
	AnswerAAAA = netip.MustParseAddr("fd00::1:2:3")
)

// Question is one entry of a DNS question section.
type Question struct {
	Name  string // fully qualified, lower case as sent, with the final dot
	Type  uint16
	Class uint16
}

// Record is one resource record of an answer section.
type Record struct {
	Name  string
	Type  uint16
	Class uint16
	TTL   uint32
	Data  []byte
}

// Message is the part of a DNS message the lab reads.
type Message struct {
	ID        uint16
	Flags     uint16
	Questions []Question
	Answers   []Record
}

// Response reports whether the QR bit is set.
func (m *Message) Response() bool { return m.Flags&flagQR != 0 }

// RCode is the response code.
func (m *Message) RCode() int { return int(m.Flags & rcodeMask) }

// appendName encodes a domain name as labels (no compression).
func appendName(b []byte, name string) ([]byte, error) {
	if name == "" || name == "." {
		return append(b, 0), nil
	}
	name = strings.TrimSuffix(name, ".")
	total := 1
	for _, label := range strings.Split(name, ".") {
		if label == "" {
			return nil, fmt.Errorf("dns name %q has an empty label", name)
		}
		if len(label) > 63 {
			return nil, fmt.Errorf("dns name %q has a label longer than 63 bytes", name)
		}
		total += 1 + len(label)
		if total > 255 {
			return nil, fmt.Errorf("dns name %q is longer than 255 bytes", name)
		}
		b = append(b, byte(len(label)))
		b = append(b, label...)
	}
	return append(b, 0), nil
}

// BuildQuery returns a query like the one glibc's and musl's stub resolvers
// send: one question, recursion desired, no EDNS.
func BuildQuery(id uint16, name string, qtype uint16) ([]byte, error) {
	b := make([]byte, 12, 12+len(name)+6)
	binary.BigEndian.PutUint16(b[0:], id)
	binary.BigEndian.PutUint16(b[2:], flagRD)
	binary.BigEndian.PutUint16(b[4:], 1) // QDCOUNT
	b, err := appendName(b, name)
	if err != nil {
		return nil, err
	}
	b = binary.BigEndian.AppendUint16(b, qtype)
	b = binary.BigEndian.AppendUint16(b, ClassIN)
	return b, nil
}

// BuildResponse answers a parsed query: it echoes the id and the question,
// and for an IN A / AAAA question adds one record (AnswerA / AnswerAAAA) with
// the given TTL; for other types it answers with no record (NODATA). A query
// without exactly one question gets SERVFAIL.
func BuildResponse(q *Message, ttl uint32) ([]byte, error) {
	flags := uint16(flagQR|flagRA) | q.Flags&(opMask|flagRD)
	b := make([]byte, 12, 64)
	binary.BigEndian.PutUint16(b[0:], q.ID)
	if len(q.Questions) != 1 {
		binary.BigEndian.PutUint16(b[2:], flags|rcodeFail)
		return b, nil
	}
	qq := q.Questions[0]
	var rdata []byte
	if qq.Class == ClassIN {
		switch qq.Type {
		case TypeA:
			a := AnswerA.As4()
			rdata = a[:]
		case TypeAAAA:
			a := AnswerAAAA.As16()
			rdata = a[:]
		}
	}
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
		b = append(b, 0xc0, 12) // pointer to the question's name
		b = binary.BigEndian.AppendUint16(b, qq.Type)
		b = binary.BigEndian.AppendUint16(b, ClassIN)
		b = binary.BigEndian.AppendUint32(b, ttl)
		b = binary.BigEndian.AppendUint16(b, uint16(len(rdata)))
		b = append(b, rdata...)
	}
	return b, nil
}

var errShort = errors.New("dns: message truncated")

// readName decodes a possibly compressed name starting at off and returns it
// (with the final dot) and the offset just after it in the original stream.
func readName(msg []byte, off int) (string, int, error) {
	var sb strings.Builder
	end := -1 // offset after the name where it started, before any jump
	// Each pointer must go strictly backwards, which both follows RFC 1035
	// practice and guarantees termination; also cap the total work.
	limit := off
	for steps := 0; ; steps++ {
		if steps > 128 {
			return "", 0, errors.New("dns: name has too many labels or pointers")
		}
		if off >= len(msg) {
			return "", 0, errShort
		}
		c := int(msg[off])
		switch c & 0xc0 {
		case 0x00:
			if c == 0 {
				if end < 0 {
					end = off + 1
				}
				if sb.Len() == 0 {
					return ".", end, nil
				}
				return sb.String(), end, nil
			}
			if off+1+c > len(msg) {
				return "", 0, errShort
			}
			if sb.Len()+c+1 > 255 {
				return "", 0, errors.New("dns: name longer than 255 bytes")
			}
			sb.Write(msg[off+1 : off+1+c])
			sb.WriteByte('.')
			off += 1 + c
		case 0xc0:
			if off+1 >= len(msg) {
				return "", 0, errShort
			}
			ptr := (c&0x3f)<<8 | int(msg[off+1])
			if end < 0 {
				end = off + 2
			}
			if ptr >= limit {
				return "", 0, fmt.Errorf("dns: compression pointer %d does not point backwards", ptr)
			}
			limit = ptr
			off = ptr
		default:
			return "", 0, fmt.Errorf("dns: unsupported label type %#x", c&0xc0)
		}
	}
}

// ParseMessage decodes the header, the questions and the answer records of a
// DNS message. It reads bytes from the network, so it checks every length.
func ParseMessage(msg []byte) (Message, error) {
	var m Message
	if len(msg) < 12 {
		return m, errShort
	}
	m.ID = binary.BigEndian.Uint16(msg[0:])
	m.Flags = binary.BigEndian.Uint16(msg[2:])
	qd := int(binary.BigEndian.Uint16(msg[4:]))
	an := int(binary.BigEndian.Uint16(msg[6:]))
	// Each question takes at least 5 bytes and each record at least 11: a
	// count beyond what fits is a lie, and must not size an allocation.
	if qd*5 > len(msg)-12 || an*11 > len(msg)-12 {
		return m, errShort
	}
	off := 12
	for i := 0; i < qd; i++ {
		name, next, err := readName(msg, off)
		if err != nil {
			return m, fmt.Errorf("question %d: %w", i+1, err)
		}
		if next+4 > len(msg) {
			return m, errShort
		}
		m.Questions = append(m.Questions, Question{
			Name:  name,
			Type:  binary.BigEndian.Uint16(msg[next:]),
			Class: binary.BigEndian.Uint16(msg[next+2:]),
		})
		off = next + 4
	}
	for i := 0; i < an; i++ {
		name, next, err := readName(msg, off)
		if err != nil {
			return m, fmt.Errorf("answer %d: %w", i+1, err)
		}
		if next+10 > len(msg) {
			return m, errShort
		}
		r := Record{
			Name:  name,
			Type:  binary.BigEndian.Uint16(msg[next:]),
			Class: binary.BigEndian.Uint16(msg[next+2:]),
			TTL:   binary.BigEndian.Uint32(msg[next+4:]),
		}
		rdlen := int(binary.BigEndian.Uint16(msg[next+8:]))
		next += 10
		if next+rdlen > len(msg) {
			return m, errShort
		}
		r.Data = msg[next : next+rdlen : next+rdlen]
		m.Answers = append(m.Answers, r)
		off = next + rdlen
	}
	return m, nil
}
