package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ctprobe/ctprobe/tracer/capture"
	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/probe"
	"github.com/ctprobe/ctprobe/tracer/render"
	"github.com/ctprobe/ctprobe/tracer/stream"
)

// runReport replays a capture file through the same decoder, correlator and
// renderer as live tracing.
func runReport(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("report")
	out := addOutputFlags(fs)
	path := fs.String("r", "", "capture file written by `ctprobe trace -w` (- for stdin)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if *path == "" {
		return usageError("report needs -r FILE: a capture written by `ctprobe trace -w FILE`")
	}
	rd, err := capture.Open(*path)
	if err != nil {
		return fmt.Errorf("read %s: %w", *path, err)
	}
	defer rd.Close()
	hdr := rd.Header()
	if err := hdr.CheckLayout(probe.RecordLayout, uint32(event.Size)); err != nil {
		return fmt.Errorf("read %s: %w", *path, err)
	}
	r, err := out.renderer(stdout, render.Clock{BootTimeUnixNano: hdr.BootTimeUnixNano})
	if err != nil {
		return err
	}
	plan := make([]render.PlanEntry, len(hdr.Plan))
	for i, e := range hdr.Plan {
		plan[i] = render.PlanEntry(e)
	}
	if err := r.Plan(plan); err != nil {
		return err
	}
	// A capture of `trace --all` reports its events as that trace printed them.
	all := *out.all || hdr.AllEvents()
	p := stream.New(r, all, time.Unix(0, hdr.StartUnixNano))
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
			err = p.Lost(render.Lost{Source: rec.Kind, CPU: rec.CPU, Count: rec.Count})
		}
		if err != nil {
			return err
		}
	}
	end := time.Unix(0, hdr.StartUnixNano)
	var counters []render.NetnsCounters
	if tr := rd.Trailer(); tr != nil {
		end = time.Unix(0, tr.EndUnixNano)
		counters = stream.CounterDelta(hdr.Counters, tr.Counters)
	}
	if readErr != nil {
		var te *capture.TruncatedError
		if !errors.As(readErr, &te) {
			return fmt.Errorf("read %s: %w", *path, readErr)
		}
		// A cut-off capture still reports its valid prefix.
		r.Warning(fmt.Sprintf("%v: the report covers the records before the cut; the kernel's end counters are missing", te))
	}
	_, err = p.Finish(end, counters)
	return err
}
