package capture

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/ctprobe/ctprobe/tracer/names"
)

// Record is one record read from a capture.
type Record struct {
	Type   RecordType // TypeSample, TypeLost, TypeNames or TypeIdle
	Offset int64      // byte offset of the record's frame in the file

	// Sample fields. Raw aliases the reader's buffer: it is only valid
	// until the next call to Next. Copy it to keep it.
	TS  uint64 // kernel ktime (ns) of receipt, or 0; of a TypeIdle, the idle's
	Raw []byte

	// Lost fields.
	CPU   int // -1 if the loss was not counted per CPU
	Count uint64
	Kind  string

	// Names fields (TypeNames).
	Names []names.Entry
}

// Reader reads a capture. It is not safe for concurrent use.
type Reader struct {
	br      *bufio.Reader
	closer  io.Closer
	off     int64 // bytes consumed so far
	order   byte
	hdr     Header
	trailer *Trailer
	records uint64 // whole frames read after the header
	fh      [frameHeaderSize]byte
	buf     []byte // payload buffer, reused across frames
	err     error  // sticky: Next keeps returning it
}

// readChunk bounds how much the reader allocates ahead of data actually
// read, so a damaged length on a short input cannot cost MaxPayload.
const readChunk = 64 << 10

// Open opens the capture file path and reads its header; "-" reads standard
// input. Close the Reader when done.
func Open(path string) (*Reader, error) {
	if path == "-" {
		r, err := NewReader(os.Stdin)
		if err != nil {
			return nil, fmt.Errorf("read capture from stdin: %w", err)
		}
		return r, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open capture: %w", err)
	}
	r, err := NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("read capture %s: %w", path, err)
	}
	r.closer = f
	return r, nil
}

// NewReader reads the preamble and header of a capture from src. Every
// error means the input holds nothing usable: not a capture (ErrEmpty,
// ErrBadMagic), a version this package cannot read (*VersionError), cut
// inside the header (errors.Is ErrTruncated), or damaged (*CorruptError).
func NewReader(src io.Reader) (*Reader, error) {
	r := &Reader{br: bufio.NewReaderSize(src, readChunk)}
	var pre [preambleSize]byte
	n, err := io.ReadFull(r.br, pre[:])
	r.off = int64(n)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return nil, fmt.Errorf("read capture preamble: %w", err)
	}
	if n == 0 {
		return nil, ErrEmpty
	}
	// Check whatever part of the magic is present first, so a short
	// non-capture is reported as such, not as a truncated capture.
	m := min(n, len(Magic))
	if string(pre[:m]) != Magic[:m] {
		return nil, ErrBadMagic
	}
	// The version comes before the checksum: a newer version may lay out
	// the rest of the preamble differently, and must be reported as newer,
	// not as corrupt. Magic and version are fixed in every version.
	if n >= 10 {
		if v := binary.LittleEndian.Uint16(pre[8:10]); v == 0 || v > Version {
			return nil, &VersionError{Version: v, Supported: Version}
		}
	}
	if n < preambleSize {
		return nil, fmt.Errorf("capture header truncated at byte %d: %w", n, ErrTruncated)
	}
	if checksum(pre[:20]) != binary.LittleEndian.Uint32(pre[20:24]) {
		return nil, &CorruptError{Offset: 0, Reason: "bad preamble checksum"}
	}
	r.order = pre[10]
	if r.order != orderLittle && r.order != orderBig {
		return nil, &CorruptError{Offset: 10, Reason: fmt.Sprintf("unknown byte-order mark %#x", r.order)}
	}
	version := binary.LittleEndian.Uint16(pre[8:10])
	layout := binary.LittleEndian.Uint32(pre[12:16])
	size := binary.LittleEndian.Uint32(pre[16:20])

	t, p, start, err := r.frame()
	if err != nil {
		var te *TruncatedError
		if errors.As(err, &te) {
			return nil, fmt.Errorf("capture header truncated at byte %d: %w", te.Offset+te.Partial, ErrTruncated)
		}
		return nil, err
	}
	if t != TypeHeader {
		return nil, &CorruptError{Offset: start, Reason: fmt.Sprintf("first frame is a %s frame, not the header", t)}
	}
	if err := json.Unmarshal(p, &r.hdr); err != nil {
		return nil, &CorruptError{Offset: start, Reason: fmt.Sprintf("header is not valid JSON: %v", err)}
	}
	// The preamble and the JSON header repeat these fields; a writer that
	// disagrees with itself cannot be trusted to have written the records.
	switch {
	case r.hdr.FormatVersion != version:
		return nil, &CorruptError{Offset: start, Reason: fmt.Sprintf("header says format version %d, preamble says %d", r.hdr.FormatVersion, version)}
	case r.hdr.RecordLayout != layout:
		return nil, &CorruptError{Offset: start, Reason: fmt.Sprintf("header says record layout %d, preamble says %d", r.hdr.RecordLayout, layout)}
	case r.hdr.RecordSize != size:
		return nil, &CorruptError{Offset: start, Reason: fmt.Sprintf("header says record size %d, preamble says %d", r.hdr.RecordSize, size)}
	}
	return r, nil
}

// Header returns the capture's header.
func (r *Reader) Header() Header { return r.hdr }

// ByteOrder returns the byte order of the recording machine, in which the
// raw sample structs are encoded.
func (r *Reader) ByteOrder() binary.ByteOrder {
	if r.order == orderBig {
		return binary.BigEndian
	}
	return binary.LittleEndian
}

// Trailer returns the trailer once Next has returned io.EOF, else nil: a
// capture cut short has none.
func (r *Reader) Trailer() *Trailer { return r.trailer }

// Close closes the file opened by Open; it does nothing for NewReader.
func (r *Reader) Close() error {
	if r.closer == nil {
		return nil
	}
	c := r.closer
	r.closer = nil
	return c.Close()
}

// Next returns the next sample, lost, names or idle record. After the
// trailer it returns io.EOF. If the input ends before the trailer it returns
// a *TruncatedError; damage gives a *CorruptError naming the offset. Records
// returned before either error are whole and checksummed. Once Next has
// returned an error it keeps returning it.
//
// Record.Raw is only valid until the next call to Next.
func (r *Reader) Next() (Record, error) {
	if r.err != nil {
		return Record{}, r.err
	}
	rec, err := r.next()
	if err != nil {
		r.err = err
	}
	return rec, err
}

func (r *Reader) next() (Record, error) {
	for {
		t, p, start, err := r.frame()
		if err != nil {
			return Record{}, err
		}
		switch t {
		case TypeSample:
			if len(p) < samplePrefix {
				return Record{}, r.corrupt(start, fmt.Sprintf("sample record of %d bytes is shorter than its %d-byte timestamp", len(p), samplePrefix))
			}
			// The header's size is the size of every ring-buffer sample;
			// a record of another size was not written by that ctprobe.
			if size := r.hdr.RecordSize; size != 0 && len(p)-samplePrefix != int(size) {
				return Record{}, r.corrupt(start, fmt.Sprintf("sample of %d bytes, but the header declares %d-byte records", len(p)-samplePrefix, size))
			}
			r.records++
			return Record{Type: t, Offset: start, TS: binary.LittleEndian.Uint64(p), Raw: p[samplePrefix:]}, nil
		case TypeLost:
			if len(p) < lostPrefix || len(p) > lostPrefix+MaxKind {
				return Record{}, r.corrupt(start, fmt.Sprintf("lost record of %d bytes (want %d to %d)", len(p), lostPrefix, lostPrefix+MaxKind))
			}
			cpu := int32(binary.LittleEndian.Uint32(p[8:12]))
			if cpu < -1 {
				return Record{}, r.corrupt(start, fmt.Sprintf("lost record with cpu %d", cpu))
			}
			r.records++
			return Record{
				Type:   t,
				Offset: start,
				Count:  binary.LittleEndian.Uint64(p[0:8]),
				CPU:    int(cpu),
				Kind:   string(p[lostPrefix:]),
			}, nil
		case TypeNames:
			return r.namesRecord(start, p)
		case TypeIdle:
			return r.idleRecord(start, p)
		case TypeTrailer:
			return Record{}, r.finish(start, p)
		case TypeHeader:
			return Record{}, r.corrupt(start, "second header frame")
		default:
			if t >= typeOptional {
				// An optional frame from a newer writer: checked, counted
				// (the trailer counts it), and skipped.
				r.records++
				continue
			}
			return Record{}, r.corrupt(start, fmt.Sprintf("unknown record type %d", uint8(t)))
		}
	}
}

// finish handles the trailer frame at start and returns io.EOF if the
// capture ends properly there.
func (r *Reader) finish(start int64, p []byte) error {
	var t Trailer
	if err := json.Unmarshal(p, &t); err != nil {
		return r.corrupt(start, fmt.Sprintf("trailer is not valid JSON: %v", err))
	}
	if t.Records != r.records {
		return r.corrupt(start, fmt.Sprintf("trailer counts %d records but the capture holds %d", t.Records, r.records))
	}
	r.trailer = &t
	// Nothing may follow the trailer: data there means files were
	// concatenated or overwritten in place, and ignoring it would silently
	// hide records.
	var b [1]byte
	n, err := io.ReadFull(r.br, b[:])
	r.off += int64(n)
	if n > 0 {
		return r.corrupt(r.off-int64(n), "data after the trailer")
	}
	if err != io.EOF {
		return fmt.Errorf("read capture at byte %d: %w", r.off, err)
	}
	return io.EOF
}

// frame reads one frame and returns its type, its payload (aliasing r.buf)
// and its offset.
func (r *Reader) frame() (RecordType, []byte, int64, error) {
	start := r.off
	n, err := io.ReadFull(r.br, r.fh[:])
	r.off += int64(n)
	if err != nil {
		return 0, nil, start, r.cut(start, err)
	}
	length := binary.LittleEndian.Uint32(r.fh[0:4])
	t := RecordType(r.fh[4])
	if checksum(r.fh[:5]) != binary.LittleEndian.Uint32(r.fh[5:9]) {
		if allZero(r.fh[:]) {
			return 0, nil, start, r.zeroTail(start)
		}
		return 0, nil, start, r.corrupt(start, "bad frame header checksum")
	}
	// Only a hostile file gets here with a valid checksum, but the bound
	// must hold for any input.
	if length > MaxPayload {
		return 0, nil, start, r.corrupt(start, fmt.Sprintf("frame length %d exceeds the %d-byte limit", length, MaxPayload))
	}
	body, err := r.readN(int(length) + frameCRCSize)
	if err != nil {
		return 0, nil, start, r.cut(start, err)
	}
	p := body[:length]
	if checksum(p) != binary.LittleEndian.Uint32(body[length:]) {
		return 0, nil, start, r.corrupt(start, fmt.Sprintf("bad checksum in %d-byte %s frame", length, t))
	}
	return t, p, start, nil
}

// readN reads exactly n bytes into r.buf. The buffer grows in chunks as
// data arrives and is reused afterwards, so reading records does not
// allocate once it has grown to the record size.
func (r *Reader) readN(n int) ([]byte, error) {
	r.buf = r.buf[:0]
	for len(r.buf) < n {
		step := min(n-len(r.buf), readChunk)
		r.buf = slices.Grow(r.buf, step)
		m, err := io.ReadFull(r.br, r.buf[len(r.buf):len(r.buf)+step])
		r.buf = r.buf[:len(r.buf)+m]
		r.off += int64(m)
		if err != nil {
			return nil, err
		}
	}
	return r.buf, nil
}

// maxZeroTail bounds the zero-filled tail zeroTail reads to its end. A
// crash leaves zeros where data the kernel held for the file was never
// written: at most what was buffered when it happened, far below this.
// More zeros than this are not such a tail (an endless stream on standard
// input would otherwise be read until killed).
const maxZeroTail = 64 << 20

// zeroTail is called when the frame at start begins with zeros. Some file
// systems leave a zero-filled tail after a crash (the size was updated but
// the data never written): if everything to the end is zero, the capture
// was cut at start. Zeros followed by data, or more than maxZeroTail of
// them, are corruption.
func (r *Reader) zeroTail(start int64) error {
	for {
		b, err := r.br.Peek(1)
		if len(b) == 0 {
			if err == io.EOF {
				return &TruncatedError{Records: r.records, Offset: start, Partial: r.off - start}
			}
			return fmt.Errorf("read capture at byte %d: %w", r.off, err)
		}
		n := r.br.Buffered()
		chunk, _ := r.br.Peek(n)
		if !allZero(chunk) {
			return r.corrupt(start, "bad frame header checksum (zeros followed by data)")
		}
		r.br.Discard(n)
		r.off += int64(n)
		if r.off-start > maxZeroTail {
			return r.corrupt(start, fmt.Sprintf("more than %d MiB of zeros, far more than a crash leaves: reading stopped at byte %d", maxZeroTail>>20, r.off))
		}
	}
}

// cut turns a read error inside the frame at start into a *TruncatedError
// when the input simply ended.
func (r *Reader) cut(start int64, err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return &TruncatedError{Records: r.records, Offset: start, Partial: r.off - start}
	}
	return fmt.Errorf("read capture at byte %d: %w", r.off, err)
}

func (r *Reader) corrupt(off int64, reason string) error {
	return &CorruptError{Offset: off, Records: r.records, Reason: reason}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
