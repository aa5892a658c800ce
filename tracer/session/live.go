package session

import (
	"errors"
	"fmt"
	"time"

	"github.com/ctprobe/ctprobe/tracer/kstat"
	"github.com/ctprobe/ctprobe/tracer/names"
	"github.com/ctprobe/ctprobe/tracer/stream"
	"github.com/ctprobe/ctprobe/tracer/summary"
)

// liveStream is the live half of the promise that a report of a capture
// prints what the live trace printed. It hands each record, and each time
// the reader found the ring buffer idle, to the pipeline, and writes to the
// capture what a replay needs to decide as the pipeline did, in the order
// it decided: the names its lookups answered, then the record or the idle
// that made it look them up (docs/capture-format.md, Idle).
type liveStream struct {
	p     *stream.Processor
	w     captureWriter // nil: no capture
	names *batchNames   // nil: no names
	// pending is reused for the names written to the capture.
	pending []names.Entry
	// idleAt is the kernel time of the latest idle that only moved the
	// correlator's clock (stream.Processor.Idle): it changes nothing
	// before the next record, so it is written just before that record.
	idleAt uint64
}

func newLiveStream(p *stream.Processor, w captureWriter, res *names.Resolver) *liveStream {
	l := &liveStream{p: p, w: w}
	if res != nil {
		l.names = &batchNames{r: res, batch: map[names.Key]names.Names{}}
		p.SetNames(l.names)
	}
	return l
}

// record processes a record received at kernel time now, then writes it to
// the capture: an idle before it that moved the correlator's clock, and
// the names its incidents and findings were given, go before it.
func (l *liveStream) record(raw []byte, now uint64) error {
	l.names.next()
	before := l.p.Stats()
	err := l.p.Record(raw)
	if l.w != nil && l.idleAt != 0 {
		if werr := l.w.WriteIdle(l.idleAt); werr != nil {
			return fmt.Errorf("write capture: %w", werr)
		}
	}
	l.idleAt = 0
	if after := l.p.Stats(); after.Incidents != before.Incidents || after.Findings != before.Findings {
		if werr := l.writeNames(); werr != nil {
			return werr
		}
	}
	if l.w != nil {
		if werr := l.w.WriteRecord(now, raw); werr != nil {
			return fmt.Errorf("write capture: %w", werr)
		}
	}
	return err
}

// idle lets the pipeline print incidents that waited for late events, at
// kernel time now; an idle that did so is written to the capture at once,
// after the names it gave.
func (l *liveStream) idle(now uint64) error {
	l.names.next()
	acted, err := l.p.Idle(now)
	if !acted {
		l.idleAt = now
		return err
	}
	l.idleAt = 0
	err = errors.Join(err, l.writeNames())
	if l.w != nil {
		if werr := l.w.WriteIdle(now); werr != nil {
			err = errors.Join(err, fmt.Errorf("write capture: %w", werr))
		}
	}
	return err
}

// finish reports what the correlator still held and prints the summary;
// the names that gave go to the capture, before its trailer.
func (l *liveStream) finish(end time.Time, counters []kstat.NetnsCounters) (*summary.Summary, error) {
	l.names.next()
	sum, err := l.p.Finish(end, counters)
	return sum, errors.Join(err, l.writeNames())
}

// writeNames writes the names answered since the last call.
func (l *liveStream) writeNames() error {
	if l.names == nil {
		return nil
	}
	l.pending, _ = l.names.r.Pending(l.pending[:0])
	if len(l.pending) == 0 || l.w == nil {
		return nil
	}
	if err := l.w.WriteNames(l.pending); err != nil {
		return fmt.Errorf("write capture: %w", err)
	}
	return nil
}

// batchNames gives a key one answer for a batch of lookups: those of the
// incidents and findings that one record, one idle or the end completed.
// The capture gives a report one answer per key for a batch, the last names
// frame before the record or idle, while a resolver's answer can change
// between two lookups of a batch (the first one missed and started a
// refresh, which landed before the second: seen on the VM lab's
// chain-too-long run, whose first finding's netns was named from its
// second on).
type batchNames struct {
	r     *names.Resolver
	batch map[names.Key]names.Names
}

func (b *batchNames) Names(k names.Key) names.Names {
	n, ok := b.batch[k]
	if !ok {
		n = b.r.Names(k)
		b.batch[k] = n
	}
	return n
}

// next starts a batch.
func (b *batchNames) next() {
	if b != nil {
		clear(b.batch)
	}
}
