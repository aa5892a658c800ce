package session

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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

// Replay feeds a capture's records through the same pipeline as a live
// session, printing what the live run printed; all prints every event
// (a capture of a mode that printed events prints them anyway).
//
// A capture cut short or damaged is reported up to the end of its last
// whole record, then summarised like a whole one (without the kernel's
// end counters, which the trailer holds); the read error is returned after
// that: a *capture.TruncatedError or *capture.CorruptError, wrapped.
func Replay(rd *capture.Reader, r render.Renderer, all bool) (Replayed, error) {
	return replay(rd, r, all, incident.Options{})
}

// replay is Replay with the correlator's options.
func replay(rd *capture.Reader, r render.Renderer, all bool, corr incident.Options) (Replayed, error) {
	if err := CheckReplayable(rd); err != nil {
		return Replayed{}, err
	}
	hdr := rd.Header()
	if err := r.Plan(hdr.Plan); err != nil {
		return Replayed{}, err
	}
	if m, ok := hdr.TraceMode(); ok && m.PrintsEvents() {
		all = true
	}
	corr.ClashProbed = plan.IsAttached(hdr.Plan, "clash")
	p := stream.NewWithCorrelator(r, all, time.Unix(0, hdr.StartUnixNano), corr)
	// The names the live trace gave come before the records whose
	// incidents they named.
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
		switch rec.Type {
		case capture.TypeSample:
			err = p.Record(rec.Raw)
		case capture.TypeLost:
			err = p.Lost(loss.Count{Kind: loss.Kind(rec.Kind), CPU: rec.CPU, Count: rec.Count})
		case capture.TypeNames:
			table.Add(rec.Names)
		}
		if err != nil {
			return Replayed{Stats: p.Stats()}, err
		}
	}
	end := time.Unix(0, hdr.StartUnixNano)
	var counters []kstat.NetnsCounters
	tr := rd.Trailer()
	if tr != nil {
		end = time.Unix(0, tr.EndUnixNano)
		counters = kstat.Growth(hdr.Counters, tr.Counters)
	}
	sum, err := p.Finish(end, counters)
	if readErr != nil {
		err = readErr
	}
	return Replayed{Stats: p.Stats(), Summary: sum, Trailer: tr}, err
}
