package capture

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/ctprobe/ctprobe/tracer/loss"
)

// Flush policy. Buffering keeps the per-record cost to a memcpy, but a
// record still in the buffer is lost if ctprobe is killed, so the writer
// hands buffered data to the kernel after FlushRecords records and, via a
// timer, at most FlushInterval after the first unflushed record. Data handed
// to the kernel survives SIGKILL; only Close fsyncs.
const (
	FlushRecords  = 256
	FlushInterval = time.Second
)

const writeBufferSize = 64 << 10

var errClosed = errors.New("capture writer is closed")

// Writer writes a capture. It is safe for concurrent use, so Flush may be
// called from a timer goroutine while another goroutine writes records.
// After a write error (e.g. disk full) every method returns that error; the
// file then holds a valid prefix that readers report as truncated.
type Writer struct {
	mu        sync.Mutex
	bw        *bufio.Writer
	file      *os.File // set when Create opened a file: synced and closed by Close
	frame     []byte   // scratch for one frame, reused to avoid allocations
	records   uint64
	size      int64 // bytes written, buffered ones included
	unflushed int
	lost      map[string]uint64
	recSize   uint32 // Header.RecordSize: every sample's size, or 0
	timer     *time.Timer
	timerSet  bool
	interval  time.Duration
	err       error // sticky write error
	closed    bool
}

// NewWriter writes a capture to w, starting with the preamble and header,
// which it flushes at once so that even a trace killed immediately leaves a
// readable capture saying what was traced. Close does not close w.
//
// The writer sets h.FormatVersion to Version, and fills in h.Arch and
// h.StartUnixNano when they are empty.
func NewWriter(dst io.Writer, h Header) (*Writer, error) {
	h.FormatVersion = Version
	if h.Arch == "" {
		h.Arch = runtime.GOARCH
	}
	if h.StartUnixNano == 0 {
		h.StartUnixNano = time.Now().UnixNano()
	}
	js, err := json.Marshal(&h)
	if err != nil {
		return nil, fmt.Errorf("encode capture header: %w", err)
	}
	if len(js) > MaxPayload {
		return nil, fmt.Errorf("capture header is %d bytes, over the %d-byte limit", len(js), MaxPayload)
	}
	w := &Writer{
		bw:       bufio.NewWriterSize(dst, writeBufferSize),
		lost:     make(map[string]uint64),
		recSize:  h.RecordSize,
		interval: FlushInterval,
	}
	pre := appendPreamble(nil, Version, nativeOrder(), h.RecordLayout, h.RecordSize)
	if _, err := w.bw.Write(pre); err != nil {
		return nil, fmt.Errorf("write capture header: %w", err)
	}
	w.size = int64(len(pre))
	if err := w.writeFrame(TypeHeader, nil, js); err != nil {
		return nil, fmt.Errorf("write capture header: %w", err)
	}
	if err := w.bw.Flush(); err != nil {
		return nil, fmt.Errorf("write capture header: %w", err)
	}
	return w, nil
}

// WriteRecord appends one ring-buffer sample: ts is the kernel ktime (ns)
// at which it was received, or 0 if unknown; raw is copied before return.
// Its size must be the header's RecordSize, unless that is 0.
func (w *Writer) WriteRecord(ts uint64, raw []byte) error {
	if len(raw) > MaxRaw {
		return fmt.Errorf("capture record of %d bytes exceeds the %d-byte limit", len(raw), MaxRaw)
	}
	if w.recSize != 0 && len(raw) != int(w.recSize) {
		return fmt.Errorf("capture record of %d bytes, but the header declares %d-byte records", len(raw), w.recSize)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	var p [samplePrefix]byte
	binary.LittleEndian.PutUint64(p[:], ts)
	return w.record(TypeSample, p[:], raw)
}

// WriteLost notes count records that never reached the capture. cpu is the
// CPU they were counted on, or -1 if not per CPU; kind says why (e.g.
// "ringbuf-reserve", "kretprobe-missed", "entry-missing"), at most MaxKind
// bytes. Counts are summed per kind into the trailer unless Close is given
// its own totals.
func (w *Writer) WriteLost(cpu int, count uint64, kind string) error {
	if cpu < -1 || cpu > math.MaxInt32 {
		return fmt.Errorf("capture lost record: cpu %d out of range", cpu)
	}
	if kind == "" || len(kind) > MaxKind {
		return fmt.Errorf("capture lost record: kind must be 1 to %d bytes, got %d", MaxKind, len(kind))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	var p [lostPrefix]byte
	binary.LittleEndian.PutUint64(p[0:8], count)
	binary.LittleEndian.PutUint32(p[8:12], uint32(int32(cpu)))
	if err := w.record(TypeLost, p[:], []byte(kind)); err != nil {
		return err
	}
	w.lost[kind] = loss.Add(w.lost[kind], count)
	return nil
}

// Flush hands buffered records to the kernel.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	return w.flushLocked()
}

// Records returns the number of records (samples and lost notes) written.
func (w *Writer) Records() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.records
}

// Size returns the number of bytes written so far, buffered ones included.
func (w *Writer) Size() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.size
}

// Close writes the trailer, flushes, and (for a file from Create) fsyncs and
// closes the file. It sets t.Records to the number of records written, and
// fills t.EndUnixNano when 0 and t.Lost when nil. After an earlier write
// error Close writes no trailer, closes the file, and returns that error.
func (w *Writer) Close(t Trailer) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errClosed
	}
	w.closed = true
	if w.timer != nil {
		w.timer.Stop()
	}
	err := w.err
	if err == nil {
		err = w.finish(t)
	}
	if w.file != nil {
		if err == nil {
			if e := w.file.Sync(); e != nil {
				err = fmt.Errorf("sync capture: %w", e)
			}
		}
		if e := w.file.Close(); e != nil && err == nil {
			err = fmt.Errorf("close capture: %w", e)
		}
	}
	return err
}

func (w *Writer) finish(t Trailer) error {
	t.Records = w.records
	if t.Lost == nil && len(w.lost) > 0 {
		t.Lost = maps.Clone(w.lost)
	}
	if t.EndUnixNano == 0 {
		t.EndUnixNano = time.Now().UnixNano()
	}
	js, err := json.Marshal(&t)
	if err != nil {
		return fmt.Errorf("encode capture trailer: %w", err)
	}
	if len(js) > MaxPayload {
		return fmt.Errorf("capture trailer is %d bytes, over the %d-byte limit", len(js), MaxPayload)
	}
	if err := w.writeFrame(TypeTrailer, nil, js); err != nil {
		return fmt.Errorf("write capture trailer: %w", err)
	}
	if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("write capture trailer: %w", err)
	}
	return nil
}

func (w *Writer) usable() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return errClosed
	}
	return nil
}

// record writes one frame between header and trailer and applies the
// flush policy. Called with mu held.
func (w *Writer) record(t RecordType, prefix, body []byte) error {
	if err := w.writeFrame(t, prefix, body); err != nil {
		w.err = fmt.Errorf("write capture: %w", err)
		return w.err
	}
	w.records++
	w.unflushed++
	if w.unflushed >= FlushRecords {
		return w.flushLocked()
	}
	w.armTimer()
	return nil
}

// writeFrame buffers one frame with payload prefix+body. The frame is built
// in one reused buffer and written with one call, so the hot path does not
// allocate.
func (w *Writer) writeFrame(t RecordType, prefix, body []byte) error {
	f := appendFrame(w.frame[:0], t, prefix, body)
	n, err := w.bw.Write(f)
	w.size += int64(n)
	// Keep the scratch buffer for the next record unless one huge record
	// grew it: there is no reason to pin a megabyte for the whole trace.
	if cap(f) <= writeBufferSize {
		w.frame = f
	} else {
		w.frame = nil
	}
	return err
}

// appendPreamble appends the fixed 24-byte start of a capture to dst.
func appendPreamble(dst []byte, version uint16, order byte, layout, size uint32) []byte {
	start := len(dst)
	dst = append(dst, Magic...)
	dst = binary.LittleEndian.AppendUint16(dst, version)
	dst = append(dst, order, 0)
	dst = binary.LittleEndian.AppendUint32(dst, layout)
	dst = binary.LittleEndian.AppendUint32(dst, size)
	return binary.LittleEndian.AppendUint32(dst, checksum(dst[start:start+20]))
}

// appendFrame appends to dst the frame of type t with payload prefix+body.
func appendFrame(dst []byte, t RecordType, prefix, body []byte) []byte {
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(prefix)+len(body)))
	dst = append(dst, byte(t))
	dst = binary.LittleEndian.AppendUint32(dst, checksum(dst[start:start+5]))
	dst = append(dst, prefix...)
	dst = append(dst, body...)
	return binary.LittleEndian.AppendUint32(dst, checksum(dst[start+frameHeaderSize:]))
}

func (w *Writer) flushLocked() error {
	w.unflushed = 0
	// If Stop fails the timer's callback is already waiting for mu; it
	// clears timerSet itself.
	if w.timerSet && w.timer.Stop() {
		w.timerSet = false
	}
	if err := w.bw.Flush(); err != nil {
		w.err = fmt.Errorf("write capture: %w", err)
		return w.err
	}
	return nil
}

// armTimer makes sure buffered records are flushed within interval even
// if no further record arrives to trigger the count-based flush.
func (w *Writer) armTimer() {
	if w.timerSet || w.interval <= 0 {
		return
	}
	w.timerSet = true
	if w.timer == nil {
		w.timer = time.AfterFunc(w.interval, w.timedFlush)
	} else {
		w.timer.Reset(w.interval)
	}
}

func (w *Writer) timedFlush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.timerSet = false
	if w.usable() != nil {
		return
	}
	// An error here is sticky: the caller's next write or Close reports it.
	_ = w.flushLocked()
}
