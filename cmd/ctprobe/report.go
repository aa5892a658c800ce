package main

import (
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/ctprobe/ctprobe/internal/cli"
	"github.com/ctprobe/ctprobe/tracer/capture"
	"github.com/ctprobe/ctprobe/tracer/render"
	"github.com/ctprobe/ctprobe/tracer/session"
)

// captureFlags are report's -r flags: files and globs, in order.
type captureFlags []string

func (c *captureFlags) String() string     { return strings.Join(*c, " ") }
func (c *captureFlags) Set(v string) error { *c = append(*c, v); return nil }

// paths are the files the -r flags name, a glob's matches in order.
func (c captureFlags) paths() ([]string, error) {
	var out []string
	for _, p := range c {
		if p == "-" || !strings.ContainsAny(p, "*?[") {
			out = append(out, p)
			continue
		}
		m, err := filepath.Glob(p)
		if err != nil {
			return nil, cli.Usagef("-r %q: %v", p, err)
		}
		if len(m) == 0 {
			return nil, cli.Usagef("-r %q: no file matches", p)
		}
		out = append(out, m...)
	}
	return out, nil
}

// defineReport defines report's flags; it replays captures through the same
// decoder, correlator and renderer as live tracing: one capture, or several
// nodes' merged in time order. A capture cut short or damaged is reported up
// to the damage, with its summary, and then fails with exit status 4
// (truncated) or 5 (corrupt).
func defineReport(fs *flag.FlagSet) func(stdout, stderr io.Writer) error {
	out := addOutputFlags(fs)
	var captures captureFlags
	fs.Var(&captures, "r", "capture `FILE` written by ctprobe trace -w (- for standard input); repeat it, or give a glob, to report several nodes' captures (or a rotated capture's files) as one, in time order")
	return func(stdout, stderr io.Writer) error {
		if len(captures) == 0 {
			return cli.Usagef("report needs -r FILE: a capture written by `ctprobe trace -w FILE`")
		}
		paths, err := captures.paths()
		if err != nil {
			return err
		}
		files := make([]session.CaptureFile, 0, len(paths))
		defer func() {
			for _, f := range files {
				f.Close()
			}
		}()
		for _, p := range paths {
			if p == "-" && len(paths) > 1 {
				return cli.Usagef("-r -: standard input is read alone, not with other captures")
			}
			rd, err := capture.Open(p)
			if err != nil {
				return fmt.Errorf("read %s: %w", p, err)
			}
			files = append(files, session.CaptureFile{Path: p, Reader: rd})
		}
		if *out.format == "pcapng" && len(files) > 1 {
			return cli.Usagef("-o pcapng takes one capture")
		}
		if len(files) == 1 {
			return reportOne(files[0], out, stdout)
		}
		fileRenderer := func(node string, at *session.CaptureTime, hdr *capture.Header) render.Renderer {
			r, _ := out.renderer(stdout, render.Options{Clock: render.Clock{BootTimeUnixNano: hdr.BootTimeUnixNano}, Now: at.Now, Node: node})
			return r
		}
		sumOut, err := out.renderer(stdout, render.Options{})
		if err != nil {
			return err
		}
		_, err = session.ReplayNodes(session.ByNode(files), *out.all, fileRenderer, sumOut)
		return err
	}
}

// reportOne reports a single capture, in any format.
func reportOne(f session.CaptureFile, out outputFlags, stdout io.Writer) error {
	hdr := f.Header()
	clock := render.Clock{BootTimeUnixNano: hdr.BootTimeUnixNano}
	// Lines without a kernel time say when in the capture they happened.
	at := session.NewCaptureTime(&hdr)
	var r render.Renderer
	var err error
	if *out.format == "pcapng" {
		// Packets for Wireshark: what the capture knows of each packet.
		r = render.NewPCAPNG(stdout, render.Options{Clock: clock})
	} else if r, err = out.renderer(stdout, render.Options{Clock: clock, Now: at.Now}); err != nil {
		return err
	}
	if _, err := session.Replay(f.Reader, r, *out.all, at); err != nil {
		return fmt.Errorf("read %s: %w", f.Path, err)
	}
	return nil
}
