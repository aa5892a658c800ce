// Package dnsmsg reads the header and the first question of a DNS message,
// as much of it as a capture holds. The BPF side copies only the first 64
// bytes of a UDP payload (PAYLOAD_MAX in bpf/ctprobe.h), so a long name is
// often cut: Parse returns the part it has and says so.
//
// Parse never panics and does a bounded amount of work for any input:
// compression pointers (not expected in a query's question, but possible in
// any message) must point strictly backwards past every earlier jump, and
// names are capped at the RFC 1035 limit of 255 bytes.
package dnsmsg

import "errors"

// HeaderLen is the size of the fixed DNS header.
const HeaderLen = 12

// Maximum wire length of a name (RFC 1035 §2.3.4) and of a label.
const (
	maxNameLen  = 255
	maxLabelLen = 63
	maxJumps    = 16
)

// Query is the header and first question of a DNS message.
type Query struct {
	ID       uint16
	Response bool  // QR bit: a response, not a query
	Opcode   uint8 // 0 QUERY
	RCode    uint8
	QDCount  uint16
	// Name is the first question's name in presentation form without the
	// trailing dot ("kube-dns.kube-system.svc.cluster.local"; "." for the
	// root). Bytes outside printable ASCII, '.' inside a label and '\' are
	// escaped as \DDD or \. and \\.
	Name  string
	Type  uint16 // 1 A, 28 AAAA, ... (0 when cut off)
	Class uint16 // 1 IN (0 when cut off)
	// Truncated: the buffer ended inside the question. Name holds the labels
	// (and the part of a label) that were present; Type and Class are valid
	// only if HasType.
	Truncated bool
	HasType   bool
}

// Errors that mean the bytes are not a usable DNS message.
var (
	ErrShort      = errors.New("dns: shorter than the 12-byte header")
	ErrNoQuestion = errors.New("dns: no question")
	ErrName       = errors.New("dns: malformed name")
)

// Parse reads the header and the first question of b. A buffer cut inside
// the question is not an error: the Query has Truncated set.
func Parse(b []byte) (Query, error) {
	var q Query
	if len(b) < HeaderLen {
		return q, ErrShort
	}
	q.ID = uint16(b[0])<<8 | uint16(b[1])
	q.Response = b[2]&0x80 != 0
	q.Opcode = (b[2] >> 3) & 0x0f
	q.RCode = b[3] & 0x0f
	q.QDCount = uint16(b[4])<<8 | uint16(b[5])
	if q.QDCount == 0 {
		return q, ErrNoQuestion
	}

	// Presentation form is at most 4x the wire form (\DDD per byte).
	var buf [maxNameLen * 4]byte
	name := buf[:0]
	off := HeaderLen
	end := -1          // where the question continues after the first jump
	limit := HeaderLen // a pointer must point below this
	wire := 0          // wire length of the name so far
	jumps := 0
	complete := false
labels:
	for !complete {
		if off >= len(b) {
			break
		}
		l := int(b[off])
		switch l & 0xc0 {
		case 0x00:
			if l == 0 {
				off++
				complete = true
				break
			}
			wire += 1 + l
			if wire > maxNameLen {
				return q, ErrName
			}
			if len(name) > 0 {
				name = append(name, '.')
			}
			lab := b[off+1:]
			if len(lab) > l {
				lab = lab[:l]
			}
			name = appendLabel(name, lab)
			off += 1 + l
		case 0xc0:
			if off+1 >= len(b) {
				break labels
			}
			ptr := (l&0x3f)<<8 | int(b[off+1])
			// Jump targets strictly decrease, so no loop can form.
			if ptr >= limit || jumps >= maxJumps {
				return q, ErrName
			}
			jumps++
			if end < 0 {
				end = off + 2
			}
			limit = ptr
			off = ptr
		default: // 0x40, 0x80: extended and reserved label types
			return q, ErrName
		}
	}
	if !complete {
		q.Truncated = true
		q.Name = string(name)
		return q, nil
	}
	if len(name) == 0 {
		name = append(name, '.')
	}
	q.Name = string(name)
	if end >= 0 {
		off = end
	}
	if off+2 > len(b) {
		q.Truncated = true
		return q, nil
	}
	q.Type = uint16(b[off])<<8 | uint16(b[off+1])
	q.HasType = true
	if off+4 > len(b) {
		q.Truncated = true
		return q, nil
	}
	q.Class = uint16(b[off+2])<<8 | uint16(b[off+3])
	return q, nil
}

func appendLabel(dst, lab []byte) []byte {
	for _, c := range lab {
		switch {
		case c == '.' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x21 || c > 0x7e:
			dst = append(dst, '\\', '0'+c/100, '0'+c/10%10, '0'+c%10)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}
