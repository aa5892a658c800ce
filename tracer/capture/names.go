package capture

import (
	"encoding/json"
	"fmt"

	"github.com/ctprobe/ctprobe/tracer/names"
)

// TypeNames frames carry the answers of the names lookup (names.Entry):
// the pod, container and netns name a live trace printed for a packet's
// netns, sender and source address. Optional (0x80): a reader older than
// them skips them. docs/capture-format.md, Names.
const TypeNames RecordType = 0x80

// namesPerFrame bounds a names frame well under MaxPayload: an entry is at
// most about 1.6 KB (names.Clip bounds each string).
const namesPerFrame = 256

type namesPayload struct {
	Entries []names.Entry `json:"entries"`
}

// WriteNames appends the names answers given since the last call. A
// writer writes them before the record whose incident they named, so that
// a reader has them when it prints that incident.
func (w *Writer) WriteNames(entries []names.Entry) error {
	for len(entries) > 0 {
		n := min(len(entries), namesPerFrame)
		b, err := json.Marshal(namesPayload{Entries: entries[:n]})
		if err != nil {
			return fmt.Errorf("capture names record: %w", err)
		}
		if len(b) > MaxPayload {
			return fmt.Errorf("capture names record of %d bytes exceeds the %d-byte limit", len(b), MaxPayload)
		}
		w.mu.Lock()
		err = w.usable()
		if err == nil {
			err = w.record(TypeNames, nil, b)
		}
		w.mu.Unlock()
		if err != nil {
			return err
		}
		entries = entries[n:]
	}
	return nil
}

// WriteNames writes to the file being written (Writer.WriteNames). A new
// file needs the names again: the caller forgets what it wrote before a
// rotation (names.Resolver.Rerecord).
func (r *Rotator) WriteNames(entries []names.Entry) error { return r.w.WriteNames(entries) }

// namesRecord decodes a names frame.
func (r *Reader) namesRecord(start int64, p []byte) (Record, error) {
	var v namesPayload
	if err := json.Unmarshal(p, &v); err != nil {
		return Record{}, r.corrupt(start, fmt.Sprintf("names record is not valid JSON: %v", err))
	}
	r.records++
	return Record{Type: TypeNames, Offset: start, Names: v.Entries}, nil
}
