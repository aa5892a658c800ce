package dnsmsg

import (
	"encoding/binary"
	"fmt"
)

// Question is one entry of a question section.
type Question struct {
	Name  string // see the package comment for its form
	Type  uint16
	Class uint16
}

// Record is one resource record of an answer section.
type Record struct {
	Name  string
	Type  uint16
	Class uint16
	TTL   uint32
	Data  []byte // RDATA, a slice of the parsed message
}

// Message is the header, the questions and the answers of a DNS message
// (authority and additional records are not read).
type Message struct {
	ID        uint16
	Flags     uint16
	Questions []Question
	Answers   []Record
}

// Response reports whether the QR bit is set.
func (m *Message) Response() bool { return m.Flags&FlagQR != 0 }

// Opcode is the kind of query (0 QUERY).
func (m *Message) Opcode() uint8 { return opcode(m.Flags) }

// RCode is the response code.
func (m *Message) RCode() uint8 { return rcode(m.Flags) }

// Smallest question (root name, type, class) and record (root name, type,
// class, TTL, RDLENGTH): a count of more than fit is a lie, and must not
// size an allocation.
const (
	minQuestionLen = 1 + 4
	minRecordLen   = 1 + 10
)

// ParseMessage decodes the header, the questions and the answer records of a
// whole DNS message. A message cut short is an error (ErrTruncated).
//
// What it allocates is bounded by the input: a slice sized by counts that
// the bytes present can hold, and a name of at most 1020 bytes per question
// or record, which takes at least 5 or 11 bytes of the message (a record's
// name that repeats the one before shares its string).
func ParseMessage(msg []byte) (Message, error) {
	var m Message
	if len(msg) < HeaderLen {
		return m, ErrShort
	}
	if len(msg) > MaxLen {
		return m, ErrTooLong
	}
	m.ID = binary.BigEndian.Uint16(msg)
	m.Flags = binary.BigEndian.Uint16(msg[2:])
	qd := int(binary.BigEndian.Uint16(msg[4:]))
	an := int(binary.BigEndian.Uint16(msg[6:]))
	if qd*minQuestionLen > len(msg)-HeaderLen || an*minRecordLen > len(msg)-HeaderLen {
		return m, ErrTruncated
	}
	var names names
	off := HeaderLen
	if qd > 0 {
		m.Questions = make([]Question, 0, qd)
	}
	for i := range qd {
		name, next, err := names.read(msg, off)
		if err != nil {
			return m, fmt.Errorf("question %d: %w", i+1, err)
		}
		if next+4 > len(msg) {
			return m, ErrTruncated
		}
		m.Questions = append(m.Questions, Question{
			Name:  name,
			Type:  binary.BigEndian.Uint16(msg[next:]),
			Class: binary.BigEndian.Uint16(msg[next+2:]),
		})
		off = next + 4
	}
	if an > 0 {
		m.Answers = make([]Record, 0, an)
	}
	for i := range an {
		name, next, err := names.read(msg, off)
		if err != nil {
			return m, fmt.Errorf("answer %d: %w", i+1, err)
		}
		if next+10 > len(msg) {
			return m, ErrTruncated
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
			return m, ErrTruncated
		}
		r.Data = msg[next : next+rdlen : next+rdlen]
		m.Answers = append(m.Answers, r)
		off = next + rdlen
	}
	return m, nil
}

// names decodes the names of one message. Answers usually repeat the
// question's name through a pointer: a name equal to the one before shares
// its string.
type names struct {
	buf  [MaxNameText]byte
	last string
}

func (n *names) read(msg []byte, off int) (string, int, error) {
	name, next, complete, err := readName(n.buf[:0], msg, off)
	if err != nil {
		return "", 0, err
	}
	if !complete {
		return "", 0, ErrTruncated
	}
	if len(name) == 0 {
		return ".", next, nil
	}
	if string(name) != n.last {
		n.last = string(name)
	}
	return n.last, next, nil
}
