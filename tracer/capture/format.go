// Package capture reads and writes ctprobe capture files: the raw records a
// trace delivered from the BPF ring buffer, plus the context needed to decode
// and correlate them later on another machine (`ctprobe trace -w FILE`, then
// `ctprobe report -r FILE`).
//
// The byte-level format is specified in docs/capture-format.md. In short: a
// fixed 24-byte preamble, then a stream of self-checking frames
//
//	[u32 length][u8 type][u32 CRC-32C of length+type][payload][u32 CRC-32C of payload]
//
// whose first frame is the JSON header and whose last is the JSON trailer.
// Each frame checks itself, so a file cut anywhere (crash, full disk,
// SIGKILL) is still readable up to its last whole record, and corruption is
// detected at the frame where it happened.
package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/ctprobe/ctprobe/tracer/kstat"
	"github.com/ctprobe/ctprobe/tracer/mode"
	"github.com/ctprobe/ctprobe/tracer/plan"
)

// Version is the capture format version this package writes and the newest
// it reads.
const Version uint16 = 1

// Magic starts every capture file.
const Magic = "CTPROBE\x00"

const (
	// MaxPayload bounds every frame payload (header, record, trailer). It is
	// far above any real record and keeps a reader of hostile input from
	// allocating more than this per frame.
	MaxPayload = 1 << 20
	// MaxRaw is the largest raw sample WriteRecord accepts: MaxPayload minus
	// the 8-byte timestamp.
	MaxRaw = MaxPayload - 8
	// MaxKind bounds the kind string of a lost record.
	MaxKind = 255

	preambleSize    = 24
	frameHeaderSize = 9 // u32 length, u8 type, u32 CRC
	frameCRCSize    = 4
	samplePrefix    = 8  // u64 ts
	lostPrefix      = 12 // u64 count, i32 cpu
)

// RecordType is the type byte of a frame.
type RecordType uint8

// Frame types. Types 0x80 and up are optional: a reader that does not know
// one skips it (after checking its CRC), so they can be added without a
// format version bump. Unknown types below 0x80 are corruption.
const (
	TypeHeader  RecordType = 1 // JSON Header; always the first frame
	TypeSample  RecordType = 2 // one ring-buffer sample: u64 ts + raw bytes
	TypeLost    RecordType = 3 // loss note: u64 count, i32 cpu, kind
	TypeTrailer RecordType = 4 // JSON Trailer; always the last frame

	typeOptional RecordType = 0x80
)

func (t RecordType) String() string {
	switch t {
	case TypeHeader:
		return "header"
	case TypeSample:
		return "sample"
	case TypeLost:
		return "lost"
	case TypeTrailer:
		return "trailer"
	case TypeNames:
		return "names"
	case TypeIdle:
		return "idle"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Byte-order marks stored in the preamble: the byte order of the recording
// machine, which is the byte order of the raw C structs in sample records.
const (
	orderLittle = 'L'
	orderBig    = 'B'
)

// castagnoli is CRC-32C: hardware-accelerated on x86-64 and arm64, and
// better at detecting burst errors than IEEE CRC-32.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// nativeOrder reports the byte-order mark of this machine. Samples come from
// the local kernel, so they are in native order.
func nativeOrder() byte {
	if binary.NativeEndian.Uint16([]byte{1, 0}) == 1 {
		return orderLittle
	}
	return orderBig
}

// Header describes a capture. It is stored as JSON (field names as below);
// readers ignore fields they do not know, so fields can be added freely.
// Anything that does not deserve a field goes in Extra.
type Header struct {
	// FormatVersion is set by the writer to Version.
	FormatVersion  uint16 `json:"FormatVersion"`
	CtprobeVersion string `json:"CtprobeVersion"`
	KernelRelease  string `json:"KernelRelease"` // uname -r
	Hostname       string `json:"Hostname"`
	// Arch is the GOARCH of the recording machine; the writer fills it in
	// when empty.
	Arch string `json:"Arch"`
	// BootTimeUnixNano is the wall-clock time of kernel ktime 0 (as
	// estimated at StartUnixNano): wall = BootTimeUnixNano + ts.
	BootTimeUnixNano int64 `json:"BootTimeUnixNano"`
	// StartUnixNano is when tracing started; the writer fills it in when 0.
	StartUnixNano int64 `json:"StartUnixNano"`
	// RecordLayout is the version of the C record structs
	// (CTPROBE_RECORD_LAYOUT); RecordSize is sizeof(struct event), or 0 if
	// records vary in size. Both are also in the binary preamble.
	RecordLayout uint32                `json:"RecordLayout"`
	RecordSize   uint32                `json:"RecordSize"`
	Plan         []plan.Entry          `json:"Plan"`
	Filters      map[string]string     `json:"Filters"` // proto, host, port, netns, pid
	Mode         string                `json:"Mode"`    // the trace mode's capture name (mode.Mode.CaptureName)
	Counters     []kstat.NetnsCounters `json:"Counters"`
	Extra        map[string]string     `json:"Extra,omitempty"`
}

// Trailer closes a capture. A capture without one was cut short.
type Trailer struct {
	// EndUnixNano is when tracing stopped; the writer fills it in when 0.
	EndUnixNano int64                 `json:"EndUnixNano"`
	Counters    []kstat.NetnsCounters `json:"Counters"`
	// Lost holds loss totals by kind. If the caller leaves it nil, the
	// writer stores the sums of its WriteLost calls.
	Lost map[string]uint64 `json:"Lost"`
	// Records is the number of frames between the header and the trailer
	// (samples, lost notes and any optional frames). The writer sets it;
	// the reader checks it.
	Records uint64            `json:"Records"`
	Extra   map[string]string `json:"Extra,omitempty"`
}

// CheckLayout returns an error unless the capture's records are in the given
// layout and size, so a decoder refuses records it would misread.
func (h *Header) CheckLayout(layout, size uint32) error {
	if h.RecordLayout != layout {
		return fmt.Errorf("capture records use layout %d but this ctprobe decodes layout %d: read it with the ctprobe that recorded it (%s)",
			h.RecordLayout, layout, h.CtprobeVersion)
	}
	if h.RecordSize != 0 && size != 0 && h.RecordSize != size {
		return fmt.Errorf("capture records are %d bytes but layout %d records are %d bytes: the capture is inconsistent",
			h.RecordSize, layout, size)
	}
	return nil
}

var (
	// ErrBadMagic: the input is not a capture at all.
	ErrBadMagic = errors.New("not a ctprobe capture (bad magic): was it written by ctprobe trace -w?")
	// ErrEmpty: the input has no bytes.
	ErrEmpty = errors.New("empty file: not a ctprobe capture (was ctprobe trace killed before it wrote the header?)")
	// ErrTruncated is matched (errors.Is) by *TruncatedError and by a
	// header cut short.
	ErrTruncated = errors.New("capture truncated")
	// ErrCorrupt is matched (errors.Is) by *CorruptError.
	ErrCorrupt = errors.New("capture corrupt")
)

// VersionError reports a format version this package cannot read.
type VersionError struct {
	Version   uint16 // in the file
	Supported uint16 // newest this package reads
}

func (e *VersionError) Error() string {
	if e.Version > e.Supported {
		return fmt.Sprintf("capture format version %d is newer than this ctprobe supports (%d): upgrade ctprobe",
			e.Version, e.Supported)
	}
	return fmt.Sprintf("capture format version %d is invalid (this ctprobe reads versions 1 to %d)",
		e.Version, e.Supported)
}

// TruncatedError is returned by Reader.Next when the input ends before the
// trailer. Every record returned before it was whole and checksummed, so a
// report over them is valid.
type TruncatedError struct {
	Records uint64 // whole frames read after the header
	Offset  int64  // byte offset where the valid prefix ends
	Partial int64  // bytes of an incomplete frame after Offset (discarded)
}

func (e *TruncatedError) Error() string {
	return fmt.Sprintf("capture truncated after %d records at byte %d: report covers the valid prefix",
		e.Records, e.Offset)
}

func (e *TruncatedError) Is(target error) bool { return target == ErrTruncated }

// CorruptError reports damaged data. Records returned before it are valid.
type CorruptError struct {
	Offset  int64  // byte offset of the damaged frame (or preamble)
	Records uint64 // whole frames read after the header before it
	Reason  string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("capture corrupt at byte %d (after %d good records): %s", e.Offset, e.Records, e.Reason)
}

func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// TraceMode is the trace mode that wrote the capture; false for a mode
// this version does not know.
func (h *Header) TraceMode() (mode.Mode, bool) { return mode.FromCapture(h.Mode) }
