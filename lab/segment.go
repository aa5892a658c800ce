package lab

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Segment is a stretch of a flood between two marks (FloodOptions.Marks).
type Segment struct {
	Label string `json:"label"`
	// Paused: the senders sent nothing in this segment (but packets that
	// were under way when it began).
	Paused bool `json:"paused,omitempty"`
	// Start is the offset from the flood's start.
	Start    time.Duration `json:"start_ns"`
	Duration time.Duration `json:"duration_ns"`
	Packets  uint64        `json:"packets"`
}

// segmenter cuts a flood into segments. It reads the flood's packet count
// only at a boundary, so that the senders pay nothing for it per packet. A
// boundary's reading ends one segment and starts the next, so no packet
// falls between two and their packets add up to the flood's.
type segmenter struct {
	count func() uint64 // packets sent so far
	pause *pauser
	start time.Time
	now   func() time.Time

	mu     sync.Mutex
	cur    Segment
	base   uint64 // the counter at cur's start
	done   []Segment
	closed bool
}

// newSegmenter starts the first segment (label "") at start; count gives
// the packets sent so far, now is the clock the boundaries are read from
// (time.Now but in tests), and pause the senders' pauser.
func newSegmenter(count func() uint64, pause *pauser, start time.Time, now func() time.Time) *segmenter {
	return &segmenter{count: count, pause: pause, start: start, now: now, base: count()}
}

// cut ends the current segment now and returns the time of the cut, as an
// offset from the start. The counter and the clock are read under the lock,
// so boundaries follow one another in both.
func (s *segmenter) cut() time.Duration {
	at := s.now().Sub(s.start)
	n := s.count()
	s.cur.Duration = at - s.cur.Start
	s.cur.Packets = n - s.base
	s.done = append(s.done, s.cur)
	s.base = n
	return at
}

// mark ends the current segment and starts one labelled label, in which the
// senders pause or send. A mark that comes after finish (read as the flood
// ended) is dropped.
func (s *segmenter) mark(label string, paused bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	// Pause before the cut and resume after it, so that a paused segment
	// holds no packet begun after its start, and a sending one none begun
	// before.
	if paused {
		s.pause.pause()
	}
	s.cur = Segment{Label: label, Paused: paused, Start: s.cut()}
	if !paused {
		s.pause.resume()
	}
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

// readMarks marks a segment for every line of r until r ends: a paused one
// for a line that starts with "!" (labelled with the rest of the line). A
// line longer than 64 KiB is an error.
func readMarks(r io.Reader, s *segmenter) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		label, paused := strings.CutPrefix(sc.Text(), "!")
		s.mark(label, paused)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading the flood's marks: %w", err)
	}
	return nil
}

// pauser holds the senders during a paused segment. Only the segmenter
// pauses and resumes; a sender pays one atomic load per packet to look.
type pauser struct {
	held atomic.Pointer[chan struct{}] // set while paused; closed on resume
}

func (p *pauser) pause() {
	if p.held.Load() == nil {
		c := make(chan struct{})
		p.held.Store(&c)
	}
}

func (p *pauser) resume() {
	if c := p.held.Swap(nil); c != nil {
		close(*c)
	}
}

// wait returns at once unless paused; then it waits for the resume and
// reports whether the flood goes on: false if ctx ends or the deadline
// passes first. waited says whether it waited.
func (p *pauser) wait(ctx context.Context, deadline time.Time) (goOn, waited bool) {
	c := p.held.Load()
	if c == nil {
		return true, false
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-*c:
		return true, true
	case <-ctx.Done():
	case <-timer.C:
	}
	return false, true
}
