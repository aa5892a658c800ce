package main

import (
	"fmt"
	"io"

	"github.com/ctprobe/ctprobe/internal/cli"
	"github.com/ctprobe/ctprobe/tracer/capture"
	"github.com/ctprobe/ctprobe/tracer/render"
	"github.com/ctprobe/ctprobe/tracer/session"
)

// runReport replays a capture file through the same decoder, correlator and
// renderer as live tracing. A capture cut short or damaged is reported up
// to the damage, with its summary, and then fails with exit status 4
// (truncated) or 5 (corrupt).
func runReport(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("report")
	out := addOutputFlags(fs)
	path := fs.String("r", "", "capture file written by `ctprobe trace -w` (- for stdin)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if *path == "" {
		return cli.Usagef("report needs -r FILE: a capture written by `ctprobe trace -w FILE`")
	}
	rd, err := capture.Open(*path)
	if err != nil {
		return fmt.Errorf("read %s: %w", *path, err)
	}
	defer rd.Close()
	clock := render.Clock{BootTimeUnixNano: rd.Header().BootTimeUnixNano}
	var r render.Renderer
	if *out.format == "pcapng" {
		// Packets for Wireshark: what the capture knows of each packet.
		r = render.NewPCAPNG(stdout, render.Options{Clock: clock})
	} else if r, err = out.renderer(stdout, clock); err != nil {
		return err
	}
	if _, err := session.Replay(rd, r, *out.all); err != nil {
		return fmt.Errorf("read %s: %w", *path, err)
	}
	return nil
}
