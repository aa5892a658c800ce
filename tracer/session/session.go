// Package session runs a trace from its start to its summary: the read
// loop over the tracer's ring buffer, the pipeline that turns records into
// output (package stream), the capture file, loss reporting as the counts
// grow, the check that every record the kernel sent was received or
// counted lost, and the kernel's own counters beside the incidents. A
// capture file replays through the same pipeline (Replay). `ctprobe trace`,
// `report` and `selftest`, and a long-running agent, all drive it.
package session

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/ctprobe/ctprobe/internal/privs"
	"github.com/ctprobe/ctprobe/tracer"
	"github.com/ctprobe/ctprobe/tracer/capture"
	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/kstat"
	"github.com/ctprobe/ctprobe/tracer/loss"
	"github.com/ctprobe/ctprobe/tracer/names"
	"github.com/ctprobe/ctprobe/tracer/plan"
	"github.com/ctprobe/ctprobe/tracer/probe"
	"github.com/ctprobe/ctprobe/tracer/render"
	"github.com/ctprobe/ctprobe/tracer/stream"
	"github.com/ctprobe/ctprobe/tracer/summary"
)

// Config configures a live session.
type Config struct {
	// Options are the ones the tracer was opened with (the capture header
	// records its mode, filters and attach mode).
	Options tracer.Options
	// Renderer gets the plan, events, incidents, losses and summaries.
	Renderer render.Renderer
	// CapturePath, if set, receives every record ("-": standard output).
	CapturePath string
	// Rotation, if its Size is set, splits the capture into numbered
	// files at CapturePath's place (capture.Rotator).
	Rotation capture.Rotation
	// CaptureOptions say whether an existing capture file is replaced.
	CaptureOptions capture.CreateOptions
	// DropPrivileges gives up, once the capture is created and the kernel's
	// counters first read, every capability the session no longer uses
	// (tracer.DropPrivileges); the process can then do nothing else that
	// needs one.
	DropPrivileges bool
	// Version is the ctprobe version written into the capture header.
	Version string
	// BootTime is the wall-clock time of kernel time 0 (BootTime()), the
	// one the renderer's clock uses: the capture keeps it, so that a
	// report prints the times the live run printed.
	BootTime int64
	// Count stops the session after this many incidents (events, when the
	// mode prints events); 0: no limit.
	Count uint64
	// Duration stops the session after this long; 0: no limit.
	Duration time.Duration
	// Interval prints a summary this often; 0: only at the end.
	Interval time.Duration
	// Stop ends the session when it is closed or receives a value.
	Stop <-chan struct{}
	// Signals end the session like Stop (SIGINT, SIGTERM).
	Signals <-chan os.Signal
	// Names names the pod and container of both packets of every incident
	// (nil: no names). What it answered goes into the capture, before the
	// record or idle whose incident it named, so that a report prints the
	// same names (Replay).
	Names *names.Resolver
}

// Session is one live trace.
type Session struct {
	cfg Config
	t   *tracer.Tracer
	p   *stream.Processor
	// live hands records and idles to p and writes the capture.
	live     *liveStream
	w        captureWriter
	rot      *capture.Rotator // w, when the capture rotates
	start    time.Time
	deadline time.Time
	// startCounters are the kernel's counters when the session started;
	// intervalCounters when the current interval began.
	startCounters, intervalCounters []kstat.NetnsCounters
	reported                        map[string]uint64 // losses already reported, by kind, place and CPU
	// stoppedByCount: the count was reached and the ring buffer left
	// unread, so sent = received + lost cannot hold.
	stoppedByCount bool
	gatherTimer    *time.Timer
	accounting     map[string]string
	// What another goroutine may ask while Run runs (Liveness, Progress):
	// records read and through the pipeline, when the read loop last
	// ran (Unix ns), and whether the probes were detached.
	read     atomic.Uint64
	lastLoop atomic.Int64
	detached atomic.Bool
}

// Start begins a session on an opened tracer: it reads the kernel's
// counters, prints the plan and creates the capture. The session owns
// neither the tracer nor the renderer: the caller closes the tracer after
// Finish.
func Start(t *tracer.Tracer, cfg Config) (*Session, error) {
	counters, err := kstat.SnapshotAll()
	if err != nil {
		return nil, err
	}
	// Wall-clock times only (Round(0) drops the monotonic reading), so that a
	// report of the capture computes the same durations as this run.
	s := &Session{cfg: cfg, t: t, start: time.Now().Round(0), startCounters: counters, intervalCounters: counters}
	s.lastLoop.Store(s.start.UnixNano())
	if cfg.Duration > 0 {
		s.deadline = s.start.Add(cfg.Duration)
	}
	hdr := s.captureHeader(s.start, counters)
	if err := startStream(cfg.Renderer, &hdr, false); err != nil {
		return nil, err
	}
	switch {
	case cfg.CapturePath != "" && cfg.Rotation.Size > 0:
		if s.rot, err = capture.CreateRotating(cfg.CapturePath, cfg.Rotation, hdr); err != nil {
			return nil, err
		}
		s.w = s.rot
	case cfg.CapturePath != "":
		if s.w, err = capture.Create(cfg.CapturePath, hdr, cfg.CaptureOptions); err != nil {
			return nil, err
		}
	}
	if cfg.DropPrivileges {
		keep := kstat.Capabilities
		if cfg.Names != nil {
			keep |= names.Capabilities
		}
		if s.rot != nil {
			keep |= rotationCaps
		}
		if _, err := t.DropPrivileges(keep); err != nil {
			cfg.Renderer.Warning(fmt.Sprintf("dropping capabilities: %v: ctprobe may keep more than it needs", err))
		}
	}
	s.p = stream.New(cfg.Renderer, cfg.Options.Mode.PrintsEvents(), s.start, plan.IsAttached(t.Plan, "clash"))
	s.live = newLiveStream(s.p, s.w, cfg.Names)
	return s, nil
}

// Stats are the pipeline's counts so far.
func (s *Session) Stats() stream.Stats { return s.p.Stats() }

// captureWriter is a capture file, or a rotated capture's current one.
type captureWriter interface {
	WriteRecord(ts uint64, raw []byte) error
	WriteLost(cpu int, count uint64, kind string) error
	WriteNames(entries []names.Entry) error
	WriteIdle(ts uint64) error
	Close(t capture.Trailer) error
}

// captureHeader is the header of a capture file that starts at start,
// when the kernel's counters were counters.
func (s *Session) captureHeader(start time.Time, counters []kstat.NetnsCounters) capture.Header {
	host, _ := os.Hostname()
	opts := s.cfg.Options
	extra := map[string]string{"clash_era": s.t.Kernel.ClashEra()}
	if s.cfg.Names != nil {
		extra["names"] = s.cfg.Names.Status().String()
	}
	if opts.Attach != "" {
		extra["attach"] = string(opts.Attach)
	}
	return capture.Header{
		CtprobeVersion:   s.cfg.Version,
		KernelRelease:    s.t.Kernel.Release,
		Hostname:         host,
		BootTimeUnixNano: s.cfg.BootTime,
		StartUnixNano:    start.UnixNano(),
		RecordLayout:     probe.RecordLayout,
		RecordSize:       uint32(event.Size),
		Plan:             s.t.Plan,
		Filters:          opts.Filter.Strings(),
		Mode:             opts.Mode.CaptureName(),
		Counters:         counters,
		Extra:            extra,
	}
}

// Finish ends the session: it checks the accounting, prints the summary
// over the growth of the kernel's counters since Start (or over counters,
// if given: a caller that measured its own namespaces) and closes the
// capture. runErr, the error Run returned, is kept in the result.
func (s *Session) Finish(runErr error, counters []kstat.NetnsCounters) (*summary.Summary, error) {
	s.checkAccounting()
	end := time.Now().Round(0)
	endCounters, err := kstat.SnapshotAll()
	if err != nil {
		s.cfg.Renderer.Warning("reading the kernel's counters at the end: " + err.Error())
	}
	if counters == nil {
		counters = kstat.Growth(s.startCounters, endCounters)
	}
	sum, finishErr := s.live.finish(end, counters)
	if s.w != nil {
		tr := capture.Trailer{EndUnixNano: end.UnixNano(), Counters: endCounters, Extra: s.accounting}
		if err := s.w.Close(tr); err != nil && runErr == nil {
			runErr = fmt.Errorf("close capture: %w", err)
		}
	}
	return sum, errors.Join(runErr, finishErr)
}

// poll is how often the loop wakes without records, to check signals,
// deadlines and loss counters.
const poll = 200 * time.Millisecond

// Run reads records until a stop condition (Stop, Signals, Duration,
// Count), then detaches the probes and drains the ring buffer.
func (s *Session) Run() error {
	var rec ringbuf.Record
	nextInterval := time.Now().Add(s.cfg.Interval)
	nextLossPoll := time.Now().Add(poll)
	for {
		select {
		case <-s.cfg.Signals:
			return s.drain(&rec)
		case <-s.cfg.Stop:
			return s.drain(&rec)
		default:
		}
		now := time.Now()
		s.lastLoop.Store(now.UnixNano())
		if !s.deadline.IsZero() && !now.Before(s.deadline) {
			return s.drain(&rec)
		}
		if s.cfg.Interval > 0 && !now.Before(nextInterval) {
			nextInterval = now.Add(s.cfg.Interval)
			if err := s.reportLosses(); err != nil {
				return err
			}
			// The kernel's counters over the same interval as the incidents.
			counters, _ := kstat.SnapshotAll()
			if err := s.p.Interval(now, kstat.Growth(s.intervalCounters, counters)); err != nil {
				return err
			}
			s.intervalCounters = counters
		}
		// Under sustained load Read never times out: report losses on a
		// timer as well, so that they appear while they happen.
		if !now.Before(nextLossPoll) {
			nextLossPoll = now.Add(poll)
			if err := s.reportLosses(); err != nil {
				return err
			}
		}
		wake := now.Add(poll)
		if !s.deadline.IsZero() && s.deadline.Before(wake) {
			wake = s.deadline
		}
		s.t.SetDeadline(wake)
		// An empty ring buffer: this Read waits for the kernel's wakeup.
		// The event lines the renderer holds go out before it waits.
		woken := s.t.Buffered() == 0
		if woken {
			if err := s.cfg.Renderer.Flush(); err != nil {
				return err
			}
		}
		err := s.t.Read(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if err := s.reportLosses(); err != nil {
				return err
			}
			// Incidents that waited for late events are printed now.
			if err := s.live.idle(MonotonicNow()); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("read ring buffer: %w", err)
		}
		if err := s.handle(&rec); err != nil {
			return err
		}
		if s.cfg.Count > 0 && s.done() {
			// Like tcpdump -c: stop here, without printing what the ring
			// buffer still holds.
			s.stoppedByCount = true
			s.detach()
			return s.reportLosses()
		}
		if woken && s.gather() {
			return s.drain(&rec)
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
func (s *Session) gather() (stop bool) {
	if s.gatherTimer == nil {
		s.gatherTimer = time.NewTimer(gatherDelay)
	} else {
		s.gatherTimer.Reset(gatherDelay)
	}
	select {
	case <-s.cfg.Signals:
		return true
	case <-s.cfg.Stop:
		return true
	case <-s.gatherTimer.C:
		return false
	}
}

func (s *Session) done() bool {
	st := s.p.Stats()
	if s.cfg.Options.Mode.PrintsEvents() {
		return st.Records >= s.cfg.Count
	}
	return st.Incidents >= s.cfg.Count
}

// handle processes a record and writes it to the capture.
func (s *Session) handle(rec *ringbuf.Record) error {
	err := s.live.record(rec.RawSample, MonotonicNow())
	// Counted once the pipeline is done with it, so that a Progress that
	// shows every record read also shows every incident they made.
	s.read.Add(1)
	if err != nil {
		return err
	}
	return s.maybeRotate()
}

// maybeRotate starts the next capture file once the current one is due
// and no incident is in the making, so that each file's report has whole
// incidents and the files' incidents add up to the live run's; or when
// the file is overdue, whatever is in the making. The kernel's counters
// are read for the trailer of the one and the header of the other: each
// file's report puts its incidents beside the counters' growth over it.
func (s *Session) maybeRotate() error {
	if s.rot == nil || !s.rot.Due() {
		return nil
	}
	// Asked after every record once the file is due, the pipeline is
	// quiet between one incident's records and the next's: in a burst of
	// races, the file would otherwise grow until overdue and then split an
	// incident as likely as not.
	if !s.rot.Overdue() && !s.p.Quiet() {
		return nil
	}
	now := time.Now().Round(0)
	counters, err := kstat.SnapshotAll()
	if err != nil {
		s.cfg.Renderer.Warning("reading the kernel's counters for a capture rotation: " + err.Error())
	}
	err = privs.Raise(rotationCaps, func() error {
		return s.rot.Rotate(capture.Trailer{EndUnixNano: now.UnixNano(), Counters: counters}, s.captureHeader(now, counters))
	})
	if err != nil {
		return fmt.Errorf("rotate capture: %w", err)
	}
	if s.cfg.Names != nil {
		s.cfg.Names.Rerecord() // each file names its own incidents
	}
	return nil
}

// rotationCaps are what rotating a capture may need once the session
// dropped its capabilities: creating and removing files in a directory
// that uid 0 may write only with CAP_DAC_OVERRIDE (a user's own 0700
// directory, say). They stay permitted, raised for each rotation only.
var rotationCaps = privs.Of(unix.CAP_DAC_OVERRIDE)

func (s *Session) detach() {
	s.detached.Store(true)
	s.t.Detach()
}

// Liveness is what a health check asks of a running session.
type Liveness struct {
	// Attached is false once the probes were detached: the session is
	// ending.
	Attached bool
	// LastLoop is when the read loop last ran (before Run: when the
	// session started). The loop runs at least every 200 ms, and for each
	// record.
	LastLoop time.Time
}

// Liveness may be called from any goroutine.
func (s *Session) Liveness() Liveness {
	return Liveness{Attached: !s.detached.Load(), LastLoop: time.Unix(0, s.lastLoop.Load())}
}

// Progress is how far the reader got.
type Progress struct {
	// Read counts the records read from the ring buffer, each through the
	// pipeline (its incidents rendered).
	Read uint64
	// Sent counts the records the probes offered the ring buffer: those
	// read, those lost to a full buffer, and those not read yet.
	Sent uint64
}

// Progress may be called from any goroutine. Read is taken before Sent:
// when Sent equals Read plus the ring buffer's losses, every record sent
// before the call went through the pipeline before it.
func (s *Session) Progress() (Progress, error) {
	p := Progress{Read: s.read.Load()}
	sent, err := s.t.Sent()
	p.Sent = sent
	return p, err
}

// drain detaches the probes, so nothing new arrives, then reads what the
// ring buffer still holds and reports the final loss counts.
func (s *Session) drain(rec *ringbuf.Record) error {
	s.detach()
	for {
		s.t.SetDeadline(time.Now())
		if err := s.t.Read(rec); err != nil {
			break
		}
		if err := s.handle(rec); err != nil {
			return err
		}
	}
	return s.reportLosses()
}

// checkAccounting compares the records the kernel offered to the ring
// buffer with those read plus those it could not reserve: they must agree,
// or records vanished without being counted. It keeps the counts for the
// capture trailer.
func (s *Session) checkAccounting() {
	r := s.cfg.Renderer
	sent, err := s.t.Sent()
	if err != nil {
		r.Warning(err.Error())
		return
	}
	var lost uint64
	losses, _ := s.t.Losses()
	for _, l := range losses {
		if l.Kind == loss.Ringbuf {
			lost += l.Count
		}
	}
	received := s.p.Stats().Records
	if received+lost != sent && !s.stoppedByCount {
		r.Warning(fmt.Sprintf("ring buffer accounting: the kernel sent %d records, %d were read and %d counted lost: %d unaccounted", sent, received, lost, int64(sent)-int64(received+lost)))
	}
	s.accounting = map[string]string{
		"records_sent":     strconv.FormatUint(sent, 10),
		"records_received": strconv.FormatUint(received, 10),
		"records_lost":     strconv.FormatUint(lost, 10),
	}
	// Not a loss: how often a call ran inside another under one key (kprobe
	// mode), each still paired with its own entry.
	nested, err := s.t.Nested()
	if err != nil {
		r.Warning(err.Error())
		return
	}
	s.accounting["calls_nested"] = strconv.FormatUint(nested, 10)
}

// reportLosses prints and records loss counters that grew since last time.
func (s *Session) reportLosses() error {
	losses, err := s.t.Losses()
	if err != nil {
		return err
	}
	if s.reported == nil {
		s.reported = map[string]uint64{}
	}
	for _, l := range losses {
		// Each counter's growth is its own: the function or program it was
		// counted for is in the key; the record names the kind.
		key := fmt.Sprintf("%s:%s/%d", l.Kind, l.Where, l.CPU)
		delta := l.Count - s.reported[key]
		if delta == 0 {
			continue
		}
		s.reported[key] = l.Count
		if s.w != nil {
			if err := s.w.WriteLost(l.CPU, delta, string(l.Kind)); err != nil {
				return fmt.Errorf("write capture: %w", err)
			}
		}
		if err := s.p.Lost(loss.Count{Kind: l.Kind, CPU: l.CPU, Count: delta}); err != nil {
			return err
		}
	}
	return nil
}
