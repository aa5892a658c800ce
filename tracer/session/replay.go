package session

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ctprobe/ctprobe/tracer/capture"
	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/kstat"
	"github.com/ctprobe/ctprobe/tracer/loss"
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
// misread.
func CheckReplayable(hdr *capture.Header) error {
	return hdr.CheckLayout(probe.RecordLayout, uint32(event.Size))
}

// Replay feeds a capture's records through the same pipeline as a live
// session, printing what the live run printed; all prints every event
// (a capture of a mode that printed events prints them anyway). A capture
// cut short still reports its valid prefix, with a warning.
func Replay(rd *capture.Reader, r render.Renderer, all bool) (Replayed, error) {
	hdr := rd.Header()
	if err := CheckReplayable(&hdr); err != nil {
		return Replayed{}, err
	}
	if err := r.Plan(hdr.Plan); err != nil {
		return Replayed{}, err
	}
	if m, ok := hdr.TraceMode(); ok && m.PrintsEvents() {
		all = true
	}
	p := stream.New(r, all, time.Unix(0, hdr.StartUnixNano), plan.IsAttached(hdr.Plan, "clash"))
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
	if readErr != nil {
		var te *capture.TruncatedError
		if !errors.As(readErr, &te) {
			return Replayed{Stats: p.Stats()}, readErr
		}
		r.Warning(fmt.Sprintf("%v: the report covers the records before the cut; the kernel's end counters are missing", te))
	}
	sum, err := p.Finish(end, counters)
	return Replayed{Stats: p.Stats(), Summary: sum, Trailer: tr}, err
}
