package session

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/ctprobe/ctprobe/tracer/capture"
	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/kstat"
	"github.com/ctprobe/ctprobe/tracer/loss"
	"github.com/ctprobe/ctprobe/tracer/names"
	"github.com/ctprobe/ctprobe/tracer/plan"
	"github.com/ctprobe/ctprobe/tracer/probe"
	"github.com/ctprobe/ctprobe/tracer/render"
	"github.com/ctprobe/ctprobe/tracer/selector"
	"github.com/ctprobe/ctprobe/tracer/stream"
	"github.com/ctprobe/ctprobe/tracer/summary"
)

// Replayed is what a replay went through.
type Replayed struct {
	stream.Stats
	Summary *summary.Summary
	// Trailer is nil for a capture that was cut short.
	Trailer *capture.Trailer
}

// CheckReplayable refuses a capture whose records this ctprobe would
// misread: records of another layout, or in another byte order than the
// decoder's (event.Decode reads a record in place, in this machine's
// order).
func CheckReplayable(rd *capture.Reader) error {
	hdr := rd.Header()
	if err := hdr.CheckLayout(probe.RecordLayout, uint32(event.Size)); err != nil {
		return err
	}
	if got, want := orderName(rd.ByteOrder()), orderName(binary.NativeEndian); got != want {
		return fmt.Errorf("capture records are %s (recorded on %s), and this ctprobe decodes %s records only: report it with ctprobe on a %s machine",
			got, hdr.Arch, want, got)
	}
	return nil
}

func orderName(o binary.ByteOrder) string {
	if o.Uint16([]byte{1, 0}) == 1 {
		return "little-endian"
	}
	return "big-endian"
}

// startStream writes what a stream starts with, a live trace's and its
// capture's report alike: the header, then the plan.
func startStream(r render.Renderer, hdr *capture.Header, replay bool) error {
	err := r.Header(&render.Header{Version: hdr.CtprobeVersion, Kernel: hdr.KernelRelease, Hostname: hdr.Hostname, Mode: hdr.Mode,
		Start: time.Unix(0, hdr.StartUnixNano), Capture: replay})
	if err != nil {
		return err
	}
	return r.Plan(hdr.Plan)
}

// CaptureTime is the time a capture had reached where a replay reads it:
// when its trace started, then when the latest sample before was received
// (a sample's receipt time, capture.Record.TS) or the reader idled (an
// idle's time). Lost and names frames carry no time of their own: the live
// trace wrote them as it received the samples around them. A report stamps
// the lines that carry no kernel time (plan, lost, warning) with it,
// through render.Options.Now, so that they say when they happened, not
// when the report ran.
type CaptureTime struct {
	boot, at int64 // Unix ns
}

// NewCaptureTime starts at the capture's start.
func NewCaptureTime(hdr *capture.Header) *CaptureTime {
	return &CaptureTime{boot: hdr.BootTimeUnixNano, at: hdr.StartUnixNano}
}

// Now is the time the replay has reached.
func (c *CaptureTime) Now() time.Time { return time.Unix(0, c.at) }

// received moves the time to a sample's receipt or an idle (kernel time
// ts; 0 when the writer did not know it). It never goes back: samples are
// received in order, and a capture from another machine may hold anything.
func (c *CaptureTime) received(ts uint64) {
	if ts == 0 || ts > math.MaxInt64 {
		return
	}
	if t := c.boot + int64(ts); t > c.at {
		c.at = t
	}
}

// printsEvents says whether a replay of a capture with header hdr prints
// every event: when asked (all), or when the live trace did.
func printsEvents(hdr *capture.Header, all bool) bool {
	m, ok := hdr.TraceMode()
	return all || ok && m.PrintsEvents()
}

// feed hands one record of a capture to the pipeline: a sample, a loss
// note, the names the live trace gave (table) for the records and idles
// after it, or an idle of the live trace's reader, which let the pipeline
// complete what waited for late events at the same place as the live run.
func feed(p *stream.Processor, table *names.Table, at *CaptureTime, rec *capture.Record) error {
	switch rec.Type {
	case capture.TypeSample:
		at.received(rec.TS)
		return p.Record(rec.Raw)
	case capture.TypeIdle:
		at.received(rec.TS)
		_, err := p.Idle(rec.TS)
		return err
	case capture.TypeLost:
		return p.Lost(loss.Count{Kind: loss.Kind(rec.Kind), CPU: rec.CPU, Count: rec.Count})
	case capture.TypeNames:
		table.Add(rec.Names)
	}
	return nil
}

// Replay feeds a capture's records through the same pipeline as a live
// session, printing what the live run printed; all prints every event
// (a capture of a mode that printed events prints them anyway). at, if
// not nil, follows the capture's time as the replay reads it (a renderer
// whose Options.Now is at.Now prints the capture's times); it must be
// NewCaptureTime of rd's header.
//
// A capture cut short or damaged is reported up to the end of its last
// whole record, then summarised like a whole one over the time it
// recorded, up to its last sample (without the kernel's end counters,
// which the trailer holds); the read error is returned after that: a
// *capture.TruncatedError or *capture.CorruptError, wrapped.
func Replay(rd *capture.Reader, r render.Renderer, opts ReplayOptions, at *CaptureTime) (Replayed, error) {
	return replay(rd, r, opts, at, incident.Options{})
}

// ReplayOptions say what a replay prints.
type ReplayOptions struct {
	// All prints every event (a capture of a mode that printed events
	// prints them anyway).
	All bool
	// Select prints and counts only what it selects (nil: everything);
	// the summary then holds the kernel's counters only where they can be
	// compared with it (selector.Selector.Counters).
	Select *selector.Selector
}

// replay is Replay with the correlator's options.
func replay(rd *capture.Reader, r render.Renderer, opts ReplayOptions, at *CaptureTime, corr incident.Options) (Replayed, error) {
	if err := CheckReplayable(rd); err != nil {
		return Replayed{}, err
	}
	hdr := rd.Header()
	if at == nil {
		at = NewCaptureTime(&hdr)
	}
	if err := startStream(r, &hdr, true); err != nil {
		return Replayed{}, err
	}
	corr.ClashProbed = plan.IsAttached(hdr.Plan, "clash")
	p := stream.NewWithCorrelator(r, printsEvents(&hdr, opts.All), time.Unix(0, hdr.StartUnixNano), corr)
	p.Select(opts.Select.ForBoot(hdr.BootTimeUnixNano))
	// The names the live trace gave come before the records and idles
	// whose incidents they named.
	table := names.NewTable()
	p.SetNames(table)
	var readErr error
	for {
		rec, err := rd.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				readErr = err
			}
			break
		}
		if err := feed(p, table, at, &rec); err != nil {
			return Replayed{Stats: p.Stats()}, err
		}
	}
	end := at.Now()
	var counters []kstat.NetnsCounters
	tr := rd.Trailer()
	if tr != nil {
		end = time.Unix(0, tr.EndUnixNano)
		counters = opts.Select.Counters(kstat.Growth(hdr.Counters, tr.Counters))
	}
	sum, err := p.Finish(end, counters)
	if readErr != nil {
		err = readErr
	}
	return Replayed{Stats: p.Stats(), Summary: sum, Trailer: tr}, err
}
