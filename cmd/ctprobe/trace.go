package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ctprobe/ctprobe/internal/cli"
	"github.com/ctprobe/ctprobe/tracer"
	"github.com/ctprobe/ctprobe/tracer/capture"
	"github.com/ctprobe/ctprobe/tracer/mode"
	"github.com/ctprobe/ctprobe/tracer/plan"
	"github.com/ctprobe/ctprobe/tracer/render"
	"github.com/ctprobe/ctprobe/tracer/session"
)

// minInterval is the shortest --interval: a summary reads every netns's
// conntrack counters, and one a few milliseconds apart would print little
// but counters.
const minInterval = 100 * time.Millisecond

// outputFlags are shared by trace and report.
type outputFlags struct {
	format  *string
	all     *bool
	noColor *bool
}

// flagDefiner is the part of a flag.FlagSet that shared flags are added
// through.
type flagDefiner interface {
	String(string, string, string) *string
	Bool(string, bool, string) *bool
}

func addOutputFlags(fs flagDefiner) outputFlags {
	return outputFlags{
		format:  fs.String("o", "text", "output format: text or json (one JSON object per line, docs/json-schema.md); report also takes pcapng (the packets, for Wireshark)"),
		all:     fs.Bool("all", false, "print every new conntrack entry at confirm (tuples before and after NAT, verdict, socket) besides the races; with --timeline, every event of every probe point"),
		noColor: fs.Bool("no-color", false, "never colour the output (colour is used only on a terminal, and not when NO_COLOR is set and not empty)"),
	}
}

// checkFormat says whether -o names one of the formats a command writes
// (trace: text and json; report: pcapng too).
func (o outputFlags) checkFormat(formats ...string) error {
	if slices.Contains(formats, *o.format) {
		return nil
	}
	last := len(formats) - 1
	return cli.Usagef("-o %q: want %s or %s", *o.format, strings.Join(formats[:last], ", "), formats[last])
}

// renderer is the -o format's renderer with opt's clocks, in colour on a
// terminal unless --no-color or NO_COLOR (https://no-color.org: set and not
// empty).
func (o outputFlags) renderer(w io.Writer, opt render.Options) (render.Renderer, error) {
	if err := o.checkFormat("text", "json"); err != nil {
		return nil, err
	}
	if f, ok := w.(*os.File); ok && !*o.noColor && os.Getenv("NO_COLOR") == "" {
		opt.Color = render.IsTerminal(f.Fd())
	}
	return render.New(w, *o.format, opt)
}

// flowFlags select flows: trace applies them in the kernel, report to
// what a capture recorded.
type flowFlags struct{ proto, host, port, netns, pid *string }

// addFlowFlags defines the flow filters; pidUsage says what --pid selects
// in the command.
func addFlowFlags(fs flagDefiner, pidUsage string) flowFlags {
	return flowFlags{
		proto: fs.String("proto", "", "only this protocol (udp, tcp, icmp, ... or a number)"),
		host:  fs.String("host", "", "only flows with this address at either end, before or after NAT"),
		port:  fs.String("port", "", "only flows with this port at either end, before or after NAT"),
		netns: fs.String("netns", "", "only this network namespace (inode number, as lsns prints it)"),
		pid:   fs.String("pid", "", pidUsage),
	}
}

func (f flowFlags) filter() (tracer.Filter, error) {
	filter, err := tracer.ParseFilter(*f.proto, *f.host, *f.port, *f.netns, *f.pid)
	if err != nil {
		return filter, cli.Usagef("--%v", err) // the error starts with the field, which is the flag's name
	}
	return filter, nil
}

// defineTrace defines trace's flags; it traces until interrupted, --duration
// or --count, then prints the summary.
func defineTrace(fs *flag.FlagSet) func(stdout, stderr io.Writer) error {
	out := addOutputFlags(fs)
	flow := addFlowFlags(fs, "only conntrack entries created by this process (without --timeline: packets it sent from the netns where they clash or are confirmed)")
	duration := cli.Duration(fs, "duration", 0, "stop after this long (e.g. 30s; 0: until interrupted)")
	count := cli.Uint64(fs, "stop after this many incidents (with --all: events)", "c", "count")
	write := fs.String("w", "", "also write every record to this capture file, a new file (0600; - for stdout)")
	overwrite := fs.Bool("overwrite", false, "with -w FILE, replace FILE if it exists (a regular file only)")
	quiet := fs.Bool("q", false, "no live output (with -w or --metrics): warnings, losses and summaries go to the log on stderr")
	interval := cli.Duration(fs, "interval", 0, fmt.Sprintf("print a summary this often (e.g. 10s, at least %v; 0: only on exit)", minInterval))
	ringSize := cli.PowerOfTwo(fs, "ring-size", tracer.DefaultRingSize, tracer.MinRingSize(), tracer.MaxRingSize, "ring buffer size in bytes (a power of two)")
	timeline := fs.Bool("timeline", false, "follow every new conntrack entry (ct_in, NAT, confirm, and its sender across namespaces) so that an incident shows both packets' stages and senders; costs time on every new flow, where the default mode probes only the clash path")
	history := cli.Int(fs, "history", tracer.DefaultHistory, 1, tracer.MaxHistory, "conntrack entries whose history the kernel keeps (--timeline)")
	attach := fs.String("attach", "auto", "attach mode: auto (fentry where allowed, else kprobe), fentry or kprobe")
	skip := fs.String("skip-point", "", "optional probe points not to attach: nat, clash, origin (comma-separated)")
	agentOpts := addAgentFlags(fs)
	nf := addNameFlags(fs)
	maxActive := cli.Int(fs, "max-active", tracer.DefaultMaxActive, 1, tracer.MaxMaxActive, "kretprobe instances per function in kprobe mode (concurrent calls beyond it are missed, and reported); given, it also keeps --all's confirm probe on a kretprobe where kprobe.session (6.10+) would serve")
	return func(stdout, stderr io.Writer) error {
		// Catch SIGINT/SIGTERM before the slow part (loading and attaching):
		// a signal then stops the trace as soon as it runs, and a shell that
		// started ctprobe in the background with SIGINT ignored cannot leave it
		// running forever (Notify re-enables an ignored signal).
		sig := make(chan os.Signal, 2)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		defer signal.Stop(sig)
		filter, err := flow.filter()
		if err != nil {
			return err
		}
		how, err := tracer.ParseAttach(*attach)
		if err != nil {
			return cli.Usagef("--%v", err)
		}
		skipPoints, err := tracer.ParseSkip(*skip)
		if err != nil {
			return cli.Usagef("--skip-point: %v", err)
		}
		if cli.Given(fs, "history") && !*timeline {
			return cli.Usagef("--history sizes what --timeline keeps in the kernel: add --timeline, or leave --history out")
		}
		if *interval != 0 && *interval < minInterval {
			return cli.Usagef("--interval %v: want 0 (a summary on exit only) or %v or more", *interval, minInterval)
		}
		if cli.Given(fs, "max-active") && how == plan.Fentry {
			return cli.Usagef("--max-active sets kretprobe instances, which --attach fentry does not use: leave one out")
		}
		if err := nf.check(); err != nil {
			return err
		}
		a, err := agentOpts.setup(*write, stderr)
		if err != nil {
			return a.report(err)
		}
		defer a.close()
		if *quiet && *write == "" && !a.serves() {
			return cli.Usagef("-q silences live output, so it needs -w FILE or --metrics ADDR to keep anything")
		}
		if *overwrite && (*write == "" || *write == "-" || a.rotation.Size > 0) {
			return cli.Usagef("--overwrite replaces the file of -w FILE, so it needs one (rotated captures never replace a file)")
		}
		captureOpts := capture.CreateOptions{Overwrite: *overwrite}
		// Before the slow part: a capture that cannot be created fails now.
		if *write != "" && a.rotation.Size == 0 {
			if err := capture.CheckCreate(*write, captureOpts); err != nil {
				return a.report(captureHint(err))
			}
		}
		// With the capture on stdout, live output moves to stderr.
		live := stdout
		if *write == "-" {
			live = stderr
		}
		boot := session.BootTime()
		r, err := out.renderer(live, render.Options{Clock: render.Clock{BootTimeUnixNano: boot}})
		if err != nil {
			return err
		}
		if err := tracer.CheckPrivileges(); err != nil {
			return a.report(err)
		}
		opts := tracer.Options{Filter: filter, Mode: mode.Of(*out.all, *timeline), RingSize: *ringSize, History: *history, Attach: how, Skip: skipPoints}
		if cli.Given(fs, "max-active") {
			opts.MaxActive = *maxActive
		}
		t, err := tracer.Open(opts)
		if err != nil {
			return a.report(err)
		}
		defer t.Close()
		pods := nf.metricsPods()
		cfg := session.Config{
			Options: opts, Renderer: a.renderer(r, *quiet, t.Kernel.Release, pods), CapturePath: *write, Rotation: a.rotation,
			CaptureOptions: captureOpts, DropPrivileges: true, Version: version, BootTime: boot, Count: *count, Duration: *duration, Interval: *interval, Signals: sig,
		}
		if res := nf.resolver(*write != "", func(msg string) { cfg.Renderer.Warning(msg) }); res != nil {
			defer res.Close()
			cfg.Names = res
			pods.set(res)
		}
		s, err := session.Start(t, cfg)
		if err != nil {
			return a.report(captureHint(err))
		}
		a.serve(s)
		_, err = s.Finish(s.Run(), nil)
		return a.report(err)
	}
}

// captureHint adds to an error creating the capture file what to do.
func captureHint(err error) error {
	switch {
	case errors.Is(err, capture.ErrExists):
		return fmt.Errorf("%w: choose another -w name, or add --overwrite to replace it", err)
	case errors.Is(err, capture.ErrNotRegular):
		return fmt.Errorf("%w, which ctprobe never writes through: give -w a new file's name, or - for standard output", err)
	}
	return err
}
