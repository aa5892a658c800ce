// Package pcapng writes what a capture knows of each packet as packets, in
// the pcapng format (draft-ietf-opsawg-pcapng) that Wireshark and tshark
// read: a section header, one interface per view of the packets (before
// and after NAT), and an enhanced packet block per packet with a comment.
// The packets are rebuilt from conntrack tuples (Packet), since ctprobe
// records tuples and the start of a DNS message, not the packets.
package pcapng

import (
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// Block types and option codes (draft-ietf-opsawg-pcapng, sections 4 and 3.5).
const (
	blockSHB     = 0x0A0D0D0A
	blockIDB     = 0x00000001
	blockEPB     = 0x00000006
	byteOrder    = 0x1A2B3C4D
	optEnd       = 0
	optComment   = 1
	optIfName    = 2
	optIfTsresol = 9
	optShbApp    = 4
	// LinkRaw is LINKTYPE_RAW: each packet starts with its IPv4 or IPv6
	// header.
	LinkRaw = 101
	// snapLen is the interfaces' snapshot length: no packet is cut.
	snapLen = 0
)

// Writer writes a pcapng section. Its interfaces are named at creation;
// WritePacket refers to them by index.
type Writer struct {
	w   io.Writer
	buf []byte
	n   int // interfaces
}

// NewWriter writes the section header (naming the application) and one
// interface description per name, all raw IP with nanosecond timestamps.
func NewWriter(w io.Writer, application string, interfaces ...string) (*Writer, error) {
	pw := &Writer{w: w, n: len(interfaces)}
	var body []byte
	body = binary.LittleEndian.AppendUint32(body, byteOrder)
	body = binary.LittleEndian.AppendUint16(body, 1) // major
	body = binary.LittleEndian.AppendUint16(body, 0) // minor
	body = binary.LittleEndian.AppendUint64(body, ^uint64(0))
	body = appendOption(body, optShbApp, []byte(application))
	body = appendOption(body, optEnd, nil)
	if err := pw.block(blockSHB, body); err != nil {
		return nil, err
	}
	for _, name := range interfaces {
		body = body[:0]
		body = binary.LittleEndian.AppendUint16(body, LinkRaw)
		body = binary.LittleEndian.AppendUint16(body, 0) // reserved
		body = binary.LittleEndian.AppendUint32(body, snapLen)
		body = appendOption(body, optIfName, []byte(name))
		body = appendOption(body, optIfTsresol, []byte{9}) // 10^-9 s
		body = appendOption(body, optEnd, nil)
		if err := pw.block(blockIDB, body); err != nil {
			return nil, err
		}
	}
	return pw, nil
}

// WritePacket writes one packet seen on interface iface at t, with a
// comment (none when empty).
func (pw *Writer) WritePacket(iface int, t time.Time, data []byte, comment string) error {
	if iface < 0 || iface >= pw.n {
		return fmt.Errorf("pcapng: interface %d of %d", iface, pw.n)
	}
	ns := uint64(t.UnixNano())
	var body []byte
	body = binary.LittleEndian.AppendUint32(body, uint32(iface))
	body = binary.LittleEndian.AppendUint32(body, uint32(ns>>32))
	body = binary.LittleEndian.AppendUint32(body, uint32(ns))
	body = binary.LittleEndian.AppendUint32(body, uint32(len(data))) // captured
	body = binary.LittleEndian.AppendUint32(body, uint32(len(data))) // original
	body = append(body, data...)
	body = pad4(body)
	if comment != "" {
		body = appendOption(body, optComment, []byte(comment))
		body = appendOption(body, optEnd, nil)
	}
	return pw.block(blockEPB, body)
}

// block writes type, total length, body, total length.
func (pw *Writer) block(typ uint32, body []byte) error {
	total := uint32(12 + len(body))
	pw.buf = binary.LittleEndian.AppendUint32(pw.buf[:0], typ)
	pw.buf = binary.LittleEndian.AppendUint32(pw.buf, total)
	pw.buf = append(pw.buf, body...)
	pw.buf = binary.LittleEndian.AppendUint32(pw.buf, total)
	_, err := pw.w.Write(pw.buf)
	return err
}

func appendOption(b []byte, code uint16, value []byte) []byte {
	b = binary.LittleEndian.AppendUint16(b, code)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(value)))
	b = append(b, value...)
	return pad4(b)
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}
