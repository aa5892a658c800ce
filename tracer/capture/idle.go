package capture

import (
	"encoding/binary"
	"fmt"
)

// TypeIdle frames say that the live trace's reader found the ring buffer
// idle and told its pipeline that kernel time reached TS (incidents that
// waited for late events completed then, records aged out): a report that
// does the same at the same place among the records decides as the live
// run did. Optional (0x80 and up): a reader older than them skips them.
// docs/capture-format.md, Idle.
const TypeIdle RecordType = 0x81

const idleSize = 8 // u64 ts

// WriteIdle appends an idle of the reader at kernel time ts (ns), after
// what the pipeline decided before it and before what came after.
func (w *Writer) WriteIdle(ts uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	var p [idleSize]byte
	binary.LittleEndian.PutUint64(p[:], ts)
	return w.record(TypeIdle, p[:], nil)
}

// WriteIdle writes to the file being written (Writer.WriteIdle).
func (r *Rotator) WriteIdle(ts uint64) error { return r.w.WriteIdle(ts) }

// idleRecord decodes an idle frame.
func (r *Reader) idleRecord(start int64, p []byte) (Record, error) {
	if len(p) != idleSize {
		return Record{}, r.corrupt(start, fmt.Sprintf("idle record of %d bytes (want %d)", len(p), idleSize))
	}
	r.records++
	return Record{Type: TypeIdle, Offset: start, TS: binary.LittleEndian.Uint64(p)}, nil
}
