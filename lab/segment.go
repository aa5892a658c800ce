package lab

import (
	"bufio"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Segment is a stretch of a flood between two marks (FloodOptions.Marks).
type Segment struct {
	Label string `json:"label"`
	// Start is the offset from the flood's start.
	Start    time.Duration `json:"start_ns"`
	Duration time.Duration `json:"duration_ns"`
	Flows    uint64        `json:"flows"`
}

// segmenter cuts a flood into segments. It reads the threads' shared flow
// counter only at a boundary, so a sender pays one atomic add per flow and
// nothing more. A boundary's reading ends one segment and starts the next,
// so no flow falls between two and their flows add up to the flood's.
type segmenter struct {
	flows *atomic.Uint64
	start time.Time
	now   func() time.Time

	mu     sync.Mutex
	cur    Segment
	base   uint64 // the counter at cur's start
	done   []Segment
	closed bool
}

// newSegmenter starts the first segment (label "") at start; now is the
// clock the boundaries are read from (time.Now but in tests).
func newSegmenter(flows *atomic.Uint64, start time.Time, now func() time.Time) *segmenter {
	return &segmenter{flows: flows, start: start, now: now, base: flows.Load()}
}

// cut ends the current segment now and returns the time of the cut, as an
// offset from the start. The counter and the clock are read under the lock,
// so boundaries follow one another in both.
func (s *segmenter) cut() time.Duration {
	at := s.now().Sub(s.start)
	n := s.flows.Load()
	s.cur.Duration = at - s.cur.Start
	s.cur.Flows = n - s.base
	s.done = append(s.done, s.cur)
	s.base = n
	return at
}

// mark ends the current segment and starts one labelled label. A mark that
// comes after finish (read as the flood ended) is dropped.
func (s *segmenter) mark(label string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.cur = Segment{Label: label, Start: s.cut()}
}

// finish ends the last segment and returns them all. Call it once the
// senders have stopped, so that the last reading is the flood's total.
func (s *segmenter) finish() []Segment {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.cut()
		s.closed = true
	}
	return s.done
}

// readMarks marks a segment for every line of r until r ends; a line longer
// than 64 KiB is an error.
func readMarks(r io.Reader, s *segmenter) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		s.mark(sc.Text())
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading the flood's marks: %w", err)
	}
	return nil
}
