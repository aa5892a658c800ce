package main

import (
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/ctprobe/ctprobe/internal/cli"
	"github.com/ctprobe/ctprobe/tracer/capture"
	"github.com/ctprobe/ctprobe/tracer/render"
	"github.com/ctprobe/ctprobe/tracer/selector"
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

// selectFlags select, after the fact, what report prints and counts
// (package selector).
type selectFlags struct {
	flow                             flowFlags
	race, outcome, pod, since, until *string
}

func addSelectFlags(fs *flag.FlagSet) selectFlags {
	const timeForms = "RFC 3339 (2026-12-02T15:04:05Z, as JSON prints it), a local \"2026-12-02 15:04:05\", a time of day 15:04:05[.000001] (as text prints it: the first after the capture's start), or +DURATION after the start"
	return selectFlags{
		flow:    addFlowFlags(fs, "only incidents and findings with a packet this process sent (with --all: the ct_in and confirm events recorded in its context)"),
		race:    fs.String("race", "", "only incidents of these races (numbers 0-5, comma-separated); leaves out events and findings, which have no race"),
		outcome: fs.String("outcome", "", "only incidents with these outcomes (merged, nat-clash, dropped, port-moved, unknown; comma-separated); leaves out events and findings"),
		pod:     fs.String("pod", "", "only incidents and findings with a packet from this pod (NAMESPACE/NAME, NAME or UID, as the trace named it); leaves out events, which carry no pod"),
		since:   fs.String("since", "", "only what happened at or after this `TIME`: "+timeForms),
		until:   fs.String("until", "", "only what happened at or before this `TIME` (the forms of --since)"),
	}
}

// selector is the selection the flags make; start is when the earliest
// capture starts (the times relative to it). With the zero start, before
// any capture is opened, it checks only the flags' forms: what a time of
// day or +DURATION means, and so whether --until comes before --since,
// depends on the start.
func (f selectFlags) selector(start time.Time) (*selector.Selector, error) {
	flow, err := f.flow.filter()
	if err != nil {
		return nil, err
	}
	sel := &selector.Selector{Flow: flow, Pod: *f.pod}
	if *f.race != "" {
		if sel.Races, err = selector.ParseRaces(*f.race); err != nil {
			return nil, cli.Usagef("--%v", err)
		}
	}
	if *f.outcome != "" {
		if sel.Outcomes, err = selector.ParseOutcomes(*f.outcome); err != nil {
			return nil, cli.Usagef("--%v", err)
		}
	}
	for _, b := range []struct {
		name, value string
		to          *time.Time
	}{{"since", *f.since, &sel.Since}, {"until", *f.until, &sel.Until}} {
		if b.value == "" {
			continue
		}
		if *b.to, err = selector.ParseTime(b.value, start, time.Local); err != nil {
			return nil, cli.Usagef("--%s: %v", b.name, err)
		}
	}
	if !start.IsZero() && !sel.Since.IsZero() && !sel.Until.IsZero() && sel.Until.Before(sel.Since) {
		return nil, cli.Usagef("--until %s is before --since %s: nothing would be selected", sel.Until.Format(time.RFC3339Nano), sel.Since.Format(time.RFC3339Nano))
	}
	return sel, nil
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
	sf := addSelectFlags(fs)
	return func(stdout, stderr io.Writer) error {
		if len(captures) == 0 {
			return cli.Usagef("report needs -r FILE: a capture written by `ctprobe trace -w FILE`")
		}
		// A mistyped flag is a usage error whatever the files hold: check
		// every flag before opening any.
		if err := out.checkFormat("text", "json", "pcapng"); err != nil {
			return err
		}
		if _, err := sf.selector(time.Time{}); err != nil {
			return err
		}
		paths, err := captures.paths()
		if err != nil {
			return err
		}
		if *out.format == "pcapng" && len(paths) > 1 {
			return cli.Usagef("-o pcapng takes one capture")
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
		if a, b, ok := sameCapture(files); ok {
			return cli.Usagef("-r %s and -r %s are the same capture (node, boot and start alike): its records would count twice; give it once", a, b)
		}
		start := files[0].Header().StartUnixNano
		for _, f := range files[1:] {
			start = min(start, f.Header().StartUnixNano)
		}
		sel, err := sf.selector(time.Unix(0, start))
		if err != nil {
			return err
		}
		if sel.Pod != "" {
			for _, f := range files {
				// A trace records how it named pods in its header (session.Config.Names).
				if how := f.Header().Extra["names"]; how == "" || strings.HasPrefix(how, "none") {
					fmt.Fprintf(stderr, "ctprobe: warning: %s names no pods (its trace ran without pod names), so --pod selects nothing from it\n", f.Path)
				}
			}
		}
		opts := session.ReplayOptions{All: *out.all, Select: sel}
		if len(files) == 1 {
			return reportOne(files[0], out, opts, stdout)
		}
		fileRenderer := func(node string, at *session.CaptureTime, hdr *capture.Header) render.Renderer {
			r, _ := out.renderer(stdout, render.Options{Clock: render.Clock{BootTimeUnixNano: hdr.BootTimeUnixNano}, Now: at.Now, Node: node})
			return r
		}
		sumOut, err := out.renderer(stdout, render.Options{})
		if err != nil {
			return err
		}
		_, err = session.ReplayNodes(session.ByNode(files), opts, fileRenderer, sumOut)
		return err
	}
}

// sameCapture names two of files that are one capture given twice: a path
// repeated, a glob overlapping another -r, or a copy. A header names its
// node, the node's boot and the trace's start to the nanosecond; each file
// of a rotated capture starts when its predecessor ended.
func sameCapture(files []session.CaptureFile) (first, again string, same bool) {
	type key struct {
		host        string
		boot, start int64
	}
	seen := make(map[key]string, len(files))
	for _, f := range files {
		h := f.Header()
		k := key{h.Hostname, h.BootTimeUnixNano, h.StartUnixNano}
		if p, ok := seen[k]; ok {
			return p, f.Path, true
		}
		seen[k] = f.Path
	}
	return "", "", false
}

// reportOne reports a single capture, in any format.
func reportOne(f session.CaptureFile, out outputFlags, opts session.ReplayOptions, stdout io.Writer) error {
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
	if _, err := session.Replay(f.Reader, r, opts, at); err != nil {
		return fmt.Errorf("read %s: %w", f.Path, err)
	}
	return nil
}
