package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/ctprobe/ctprobe/tracer"
	"github.com/ctprobe/ctprobe/tracer/capture"
	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/probe"
	"github.com/ctprobe/ctprobe/tracer/render"
	"github.com/ctprobe/ctprobe/tracer/stream"
)

// outputFlags are shared by trace and report.
type outputFlags struct {
	format  *string
	all     *bool
	noColor *bool
}

func addOutputFlags(fs interface {
	String(string, string, string) *string
	Bool(string, bool, string) *bool
}) outputFlags {
	return outputFlags{
		format:  fs.String("o", "text", "output format: text or json (one JSON object per line, docs/json-schema.md)"),
		all:     fs.Bool("all", false, "print every new conntrack entry at confirm (tuples before and after NAT, verdict, socket) besides the races; with --timeline, every event of every probe point"),
		noColor: fs.Bool("no-color", false, "never colour the output (colour is used only on a terminal)"),
	}
}

func (o outputFlags) renderer(w io.Writer, clock render.Clock) (render.Renderer, error) {
	if *o.format != "text" && *o.format != "json" {
		return nil, usageError("-o %q: want text or json", *o.format)
	}
	color := false
	if f, ok := w.(*os.File); ok && !*o.noColor {
		color = render.IsTerminal(f.Fd())
	}
	return render.New(w, *o.format, render.Options{Clock: clock, Color: color})
}

func runTrace(args []string, stdout, stderr io.Writer) error {
	// Catch SIGINT/SIGTERM before the slow part (loading and attaching):
	// a signal then stops the trace as soon as it runs, and a shell that
	// started ctprobe in the background with SIGINT ignored cannot leave it
	// running forever (Notify re-enables an ignored signal).
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	fs := newFlagSet("trace")
	out := addOutputFlags(fs)
	proto := fs.String("proto", "", "only this protocol (udp, tcp, icmp, ... or a number)")
	host := fs.String("host", "", "only flows with this address at either end, before or after NAT")
	port := fs.String("port", "", "only flows with this port at either end, before or after NAT")
	netns := fs.String("netns", "", "only this network namespace (inode number, as lsns prints it)")
	pid := fs.String("pid", "", "only conntrack entries created by this process (without --timeline: packets it sent from the netns where they clash or are confirmed)")
	duration := fs.Duration("duration", 0, "stop after this long (e.g. 30s; 0: until interrupted)")
	var count uint64
	fs.Uint64Var(&count, "c", 0, "stop after this many incidents (with --all: events)")
	fs.Uint64Var(&count, "count", 0, "same as -c")
	write := fs.String("w", "", "also write every record to this capture file (0600; - for stdout)")
	quiet := fs.Bool("q", false, "no live output (with -w)")
	interval := fs.Duration("interval", 0, "print a summary this often (e.g. 10s; 0: only on exit)")
	ringSize := fs.Int("ring-size", tracer.DefaultRingSize, "ring buffer size in bytes (a power of two)")
	timeline := fs.Bool("timeline", false, "follow every new conntrack entry (ct_in, NAT, confirm, and its sender across namespaces) so that an incident shows both packets' stages and senders; costs time on every new flow, where the default mode probes only the clash path")
	history := fs.Int("history", tracer.DefaultHistory, "conntrack entries whose history the kernel keeps (--timeline)")
	attach := fs.String("attach", "auto", "attach mode: auto (fentry where allowed, else kprobe), fentry or kprobe")
	skip := fs.String("skip-point", "", "optional probe points not to attach: nat, clash, origin (comma-separated)")
	maxActive := fs.Int("max-active", tracer.DefaultMaxActive, "kretprobe instances per function in kprobe mode (concurrent calls beyond it are missed, and reported); given, it also keeps --all's confirm probe on a kretprobe where kprobe.session (6.10+) would serve")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	filter, err := tracer.ParseFilter(*proto, *host, *port, *netns, *pid)
	if err != nil {
		return usageError("%v", err)
	}
	mode, err := tracer.ParseAttach(*attach)
	if err != nil {
		return usageError("%v", err)
	}
	if *ringSize < os.Getpagesize() || *ringSize&(*ringSize-1) != 0 {
		return usageError("--ring-size %d: want a power of two of at least %d", *ringSize, os.Getpagesize())
	}
	skipPoints, err := tracer.ParseSkip(*skip)
	if err != nil {
		return usageError("%v", err)
	}
	if *maxActive < 1 || *maxActive > 4096 {
		return usageError("--max-active %d: want 1 to 4096 (the kernel's limit)", *maxActive)
	}
	if *quiet && *write == "" {
		return usageError("-q silences live output, so it needs -w FILE to keep anything")
	}
	if *duration < 0 || *interval < 0 {
		return usageError("--duration and --interval must not be negative")
	}
	// With the capture on stdout, live output moves to stderr.
	live := stdout
	if *write == "-" {
		live = stderr
	}
	clock := render.Clock{BootTimeUnixNano: bootTime()}
	r, err := out.renderer(live, clock)
	if err != nil {
		return err
	}
	if *quiet {
		r = render.Discard{}
	}
	if err := tracer.CheckPrivileges(); err != nil {
		return err
	}

	startCounters, err := stream.Snapshot()
	if err != nil {
		return err
	}
	opts := tracer.Options{Filter: filter, All: *out.all, Timeline: *timeline, RingSize: *ringSize, History: *history, Attach: mode, Skip: skipPoints}
	if flagGiven(fs, "max-active") {
		opts.MaxActive = *maxActive
	}
	t, err := tracer.Open(opts)
	if err != nil {
		return err
	}
	defer t.Close()
	// Wall-clock times only (Round(0) drops the monotonic reading), so that a
	// report of the capture computes the same durations as this run.
	start := time.Now().Round(0)
	if err := r.Plan(renderPlan(t.Plan)); err != nil {
		return err
	}

	var w *capture.Writer
	if *write != "" {
		hdr := captureHeader(t, opts, clock, start, startCounters)
		if w, err = capture.Create(*write, hdr); err != nil {
			return fmt.Errorf("create capture: %w", err)
		}
	}
	p := stream.New(r, *out.all, start)
	loop := traceLoop{t: t, p: p, w: w, count: count, all: *out.all, signals: sig}
	if *duration > 0 {
		loop.deadline = start.Add(*duration)
	}
	loop.interval = *interval
	loop.intervalCounters = startCounters
	runErr := loop.run()
	accounting := loop.checkAccounting(r)

	endCounters, err := stream.Snapshot()
	if err != nil {
		r.Warning("reading the kernel's counters at the end: " + err.Error())
	}
	end := time.Now().Round(0)
	_, finishErr := p.Finish(end, stream.CounterDelta(startCounters, endCounters))
	if w != nil {
		tr := capture.Trailer{EndUnixNano: end.UnixNano(), Counters: endCounters, Extra: accounting}
		if err := w.Close(tr); err != nil && runErr == nil {
			runErr = fmt.Errorf("close capture: %w", err)
		}
	}
	return errors.Join(runErr, finishErr)
}

// traceLoop reads records until a stop condition, then detaches and drains.
type traceLoop struct {
	t        *tracer.Tracer
	p        *stream.Processor
	w        *capture.Writer
	count    uint64
	all      bool
	deadline time.Time
	interval time.Duration
	// intervalCounters are the counters when the current interval began.
	intervalCounters []capture.NetnsCounters
	reported         map[string]uint64 // losses already reported, by source and CPU
	stop             <-chan struct{}   // closed to stop (selftest); nil for trace
	signals          <-chan os.Signal  // SIGINT/SIGTERM (trace); nil for selftest
	// stoppedByCount: -c was reached and the ring buffer left unread, so
	// sent = received + lost cannot hold.
	stoppedByCount bool
	gatherTimer    *time.Timer
}

// poll is how often the loop wakes without records, to check signals,
// deadlines and loss counters.
const poll = 200 * time.Millisecond

func (l *traceLoop) run() error {
	var rec ringbuf.Record
	nextInterval := time.Now().Add(l.interval)
	nextLossPoll := time.Now().Add(poll)
	for {
		select {
		case <-l.signals:
			return l.drain(&rec)
		case <-l.stop:
			return l.drain(&rec)
		default:
		}
		now := time.Now()
		if !l.deadline.IsZero() && !now.Before(l.deadline) {
			return l.drain(&rec)
		}
		if l.interval > 0 && !now.Before(nextInterval) {
			nextInterval = now.Add(l.interval)
			if err := l.reportLosses(); err != nil {
				return err
			}
			// The kernel's counters over the same interval as the incidents.
			counters, _ := stream.Snapshot()
			if err := l.p.Interval(now, stream.CounterDelta(l.intervalCounters, counters)); err != nil {
				return err
			}
			l.intervalCounters = counters
		}
		// Under sustained load Read never times out: report losses on a
		// timer as well, so that they appear while they happen.
		if !now.Before(nextLossPoll) {
			nextLossPoll = now.Add(poll)
			if err := l.reportLosses(); err != nil {
				return err
			}
		}
		wake := now.Add(poll)
		if !l.deadline.IsZero() && l.deadline.Before(wake) {
			wake = l.deadline
		}
		l.t.SetDeadline(wake)
		// An empty ring buffer: this Read waits for the kernel's wakeup.
		woken := l.t.Buffered() == 0
		err := l.t.Read(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if err := l.reportLosses(); err != nil {
				return err
			}
			if err := l.p.Idle(monotonicNow()); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("read ring buffer: %w", err)
		}
		if err := l.handle(&rec); err != nil {
			return err
		}
		if l.count > 0 && l.done() {
			// Like tcpdump -c: stop here, without printing what the ring
			// buffer still holds.
			l.stoppedByCount = true
			l.t.Detach()
			return l.reportLosses()
		}
		if woken && l.gather() {
			return l.drain(&rec)
		}
	}
}

// gatherDelay is how long the loop lets records gather after a wakeup
// before it reads on. The kernel wakes a reader only for a record committed
// to an empty ring buffer (the BPF ring buffer's adaptive notification), and
// each wakeup costs an irq_work on the traced CPU and a context switch and
// an epoll_wait on the reader's: a reader that reads each record as it comes
// pays both for every record, at any rate. Waiting 5 ms after a wakeup
// bounds wakeups to 200 a second, delays a line by at most 5 ms, and needs
// the ring buffer to hold 5 ms of records (the default 4 MiB: about 20 000).
const gatherDelay = 5 * time.Millisecond

// gather waits gatherDelay; it reports whether a stop came instead.
func (l *traceLoop) gather() (stop bool) {
	if l.gatherTimer == nil {
		l.gatherTimer = time.NewTimer(gatherDelay)
	} else {
		l.gatherTimer.Reset(gatherDelay)
	}
	select {
	case <-l.signals:
		return true
	case <-l.stop:
		return true
	case <-l.gatherTimer.C:
		return false
	}
}

func (l *traceLoop) done() bool {
	s := l.p.Stats()
	if l.all {
		return s.Records >= l.count
	}
	return s.Incidents >= l.count
}

func (l *traceLoop) handle(rec *ringbuf.Record) error {
	if l.w != nil {
		if err := l.w.WriteRecord(monotonicNow(), rec.RawSample); err != nil {
			return fmt.Errorf("write capture: %w", err)
		}
	}
	return l.p.Record(rec.RawSample)
}

// drain detaches the probes, so nothing new arrives, then reads what the
// ring buffer still holds and reports the final loss counts.
func (l *traceLoop) drain(rec *ringbuf.Record) error {
	l.t.Detach()
	for {
		l.t.SetDeadline(time.Now())
		err := l.t.Read(rec)
		if err != nil {
			break
		}
		if err := l.handle(rec); err != nil {
			return err
		}
	}
	return l.reportLosses()
}

// checkAccounting compares the records the kernel offered to the ring
// buffer with those read plus those it could not reserve: they must agree,
// or records vanished without being counted. It returns the counts for the
// capture trailer.
func (l *traceLoop) checkAccounting(r render.Renderer) map[string]string {
	sent, err := l.t.Sent()
	if err != nil {
		r.Warning(err.Error())
		return nil
	}
	var lost uint64
	losses, _ := l.t.Losses()
	for _, loss := range losses {
		if loss.Source == "ringbuf" {
			lost += loss.Count
		}
	}
	received := l.p.Stats().Records
	if received+lost != sent && !l.stoppedByCount {
		r.Warning(fmt.Sprintf("ring buffer accounting: the kernel sent %d records, %d were read and %d counted lost: %d unaccounted", sent, received, lost, int64(sent)-int64(received+lost)))
	}
	counts := map[string]string{
		"records_sent":     strconv.FormatUint(sent, 10),
		"records_received": strconv.FormatUint(received, 10),
		"records_lost":     strconv.FormatUint(lost, 10),
	}
	// Not a loss: how often a call ran inside another under one key (kprobe
	// mode), each still paired with its own entry.
	nested, err := l.t.Nested()
	if err != nil {
		r.Warning(err.Error())
		return counts
	}
	counts["calls_nested"] = strconv.FormatUint(nested, 10)
	return counts
}

// reportLosses prints and records loss counters that grew since last time.
func (l *traceLoop) reportLosses() error {
	losses, err := l.t.Losses()
	if err != nil {
		return err
	}
	if l.reported == nil {
		l.reported = map[string]uint64{}
	}
	for _, loss := range losses {
		key := fmt.Sprintf("%s/%d", loss.Source, loss.CPU)
		delta := loss.Count - l.reported[key]
		if delta == 0 {
			continue
		}
		l.reported[key] = loss.Count
		// The function or program after the colon is in the key, so that
		// each counter's growth is its own; the record names the kind.
		source, _, _ := strings.Cut(loss.Source, ":")
		if l.w != nil {
			if err := l.w.WriteLost(loss.CPU, delta, source); err != nil {
				return fmt.Errorf("write capture: %w", err)
			}
		}
		if err := l.p.Lost(render.Lost{Source: source, CPU: loss.CPU, Count: delta}); err != nil {
			return err
		}
	}
	return nil
}

func renderPlan(plan []tracer.PlanEntry) []render.PlanEntry {
	out := make([]render.PlanEntry, len(plan))
	for i, e := range plan {
		out[i] = render.PlanEntry{Point: e.Point, Function: e.Function, Mode: string(e.Mode), Status: e.Status, Reason: e.Reason}
	}
	return out
}

func captureHeader(t *tracer.Tracer, opts tracer.Options, clock render.Clock, start time.Time, counters []capture.NetnsCounters) capture.Header {
	host, _ := os.Hostname()
	mode := capture.ModeIncidents
	switch {
	case opts.All && opts.Timeline:
		mode = capture.ModeAllTimeline
	case opts.All:
		mode = capture.ModeAll
	case opts.Timeline:
		mode = capture.ModeTimeline
	}
	extra := map[string]string{"clash_era": t.Kernel.ClashEra()}
	if opts.Attach != "" {
		extra["attach"] = string(opts.Attach)
	}
	plan := make([]capture.PlanEntry, len(t.Plan))
	for i, e := range t.Plan {
		plan[i] = capture.PlanEntry{Point: e.Point, Function: e.Function, Mode: string(e.Mode), Status: e.Status, Reason: e.Reason}
	}
	return capture.Header{
		CtprobeVersion:   version,
		KernelRelease:    t.Kernel.Release,
		Hostname:         host,
		BootTimeUnixNano: clock.BootTimeUnixNano,
		StartUnixNano:    start.UnixNano(),
		RecordLayout:     probe.RecordLayout,
		RecordSize:       uint32(event.Size),
		Plan:             plan,
		Filters:          opts.Filter.Strings(),
		Mode:             mode,
		Counters:         counters,
		Extra:            extra,
	}
}

// monotonicNow is CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns. It is
// read once per record, so it comes from Go's monotonic clock (the same
// CLOCK_MONOTONIC, read through the vDSO) and one system call at start-up,
// not from a system call each time.
func monotonicNow() uint64 {
	return monoAtStart + uint64(time.Since(wallAtStart))
}

var monoAtStart, wallAtStart = func() (uint64, time.Time) {
	wall := time.Now()
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano()), wall
}()

// bootTime is the wall-clock time of monotonic time 0.
func bootTime() int64 {
	return time.Now().UnixNano() - int64(monotonicNow())
}
