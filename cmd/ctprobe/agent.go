package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ctprobe/ctprobe/internal/cli"
	"github.com/ctprobe/ctprobe/metrics"
	"github.com/ctprobe/ctprobe/tracer/capture"
	"github.com/ctprobe/ctprobe/tracer/render"
	"github.com/ctprobe/ctprobe/tracer/session"
)

// agentFlags are trace's flags for running on every node for weeks:
// Prometheus metrics and a health check, a capture that rotates, and
// structured logs (docs/deploy.md).
type agentFlags struct {
	metrics     *string
	logFormat   *string
	rotateSize  *string
	rotateCount *int
}

func addAgentFlags(fs *flag.FlagSet) agentFlags {
	return agentFlags{
		metrics:     fs.String("metrics", "", "serve Prometheus metrics on this address (e.g. :9965 or 127.0.0.1:9965) at /metrics, and a health check at /healthz (docs/metrics.md)"),
		logFormat:   fs.String("log-format", "text", "log format on stderr: text or json (log/slog records)"),
		rotateSize:  fs.String("rotate-size", "", "with -w DIR/NAME.ctp: write numbered files (NAME.000001.ctp, ...) of about this size (e.g. 64MiB), each a complete capture"),
		rotateCount: fs.Int("rotate-count", 0, "with --rotate-size: keep this many capture files, removing the oldest (0: keep all)"),
	}
}

// agent is what the agent flags set up around a trace.
type agent struct {
	log      *slog.Logger
	json     bool
	rotation capture.Rotation
	ln       net.Listener // the metrics address, when given
	exporter *metrics.Exporter
	server   *http.Server
	stop     context.CancelFunc
}

// setup checks the agent flags and opens the metrics address, before the
// probes are loaded: a mistake or a busy port fails at once.
func (f agentFlags) setup(write string, stderr io.Writer) (*agent, error) {
	a := &agent{stop: func() {}}
	switch *f.logFormat {
	case "text":
		a.log = slog.New(slog.NewTextHandler(stderr, nil))
	case "json":
		a.log, a.json = slog.New(slog.NewJSONHandler(stderr, nil)), true
	default:
		return nil, cli.Usagef("--log-format %q: want text or json", *f.logFormat)
	}
	if *f.rotateSize != "" {
		size, err := cli.ParseSize(*f.rotateSize)
		if err != nil || size == 0 {
			return nil, cli.Usagef("--rotate-size %q: want a size above 0 such as 64MiB", *f.rotateSize)
		}
		if write == "" || write == "-" {
			return nil, cli.Usagef("--rotate-size needs -w DIR/NAME.ctp: the directory where the numbered capture files go")
		}
		if err := writableDir(filepath.Dir(write)); err != nil {
			return a, fmt.Errorf("-w %s: %w", write, err)
		}
		a.rotation.Size = size
	}
	if *f.rotateCount < 0 || *f.rotateCount > 0 && a.rotation.Size == 0 {
		return nil, cli.Usagef("--rotate-count %d: want 0 or more, with --rotate-size", *f.rotateCount)
	}
	a.rotation.Count = *f.rotateCount
	if *f.metrics != "" {
		if err := metrics.CheckAddress(*f.metrics); err != nil {
			return nil, cli.Usagef("--metrics %v", err)
		}
		ln, err := metrics.Listen(*f.metrics)
		if err != nil {
			return a, fmt.Errorf("--metrics: %w: stop what listens there or choose another address", err)
		}
		a.ln = ln
	}
	return a, nil
}

// writableDir says whether the rotated capture's files can be made in
// dir, before the probes are loaded.
func writableDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("the capture directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("the capture directory %s is not a directory", dir)
	}
	if err := unix.Access(dir, unix.W_OK); err != nil {
		return fmt.Errorf("the capture directory %s is not writable: %w", dir, err)
	}
	return nil
}

// serves says whether metrics are served: they keep what a quiet trace
// sees.
func (a *agent) serves() bool { return a.ln != nil }

// renderer adds to out, the trace's output, the metrics exporter, and for
// a quiet trace (out then renders nothing) the log.
// pods, when not nil, labels the per-namespace metrics with their pods.
func (a *agent) renderer(out render.Renderer, quiet bool, kernel string, pods *netnsPods) render.Renderer {
	tee := render.Tee{out}
	if quiet {
		tee = render.Tee{render.Log{L: a.log}}
	}
	if a.serves() {
		o := metrics.Options{Version: version, Kernel: kernel}
		if pods != nil {
			o.Pods = pods
		}
		a.exporter = metrics.New(o)
		tee = append(tee, a.exporter)
	}
	if len(tee) == 1 {
		return tee[0]
	}
	return tee
}

// refreshEvery is how often the exporter reads the namespaces' counters
// when nobody scrapes: its memory stays bounded, and no 32-bit counter
// wraps twice unseen.
const refreshEvery = time.Minute

// serve starts the metrics server on a started session.
func (a *agent) serve(s *session.Session) {
	if !a.serves() {
		return
	}
	a.exporter.FollowProgress(s.Progress)
	health := func() error { return metrics.Health(s.Liveness(), time.Now()) }
	a.server = metrics.Serve(a.ln, metrics.Handler(a.exporter, health, a.log))
	ctx, cancel := context.WithCancel(context.Background())
	a.stop = cancel
	go a.exporter.Run(ctx, refreshEvery)
	a.log.Info("serving metrics", "address", a.ln.Addr().String(), "paths", "/metrics /healthz")
}

// close stops the metrics server (or closes the address it never served).
func (a *agent) close() {
	a.stop()
	switch {
	case a.server != nil:
		a.server.Close()
	case a.ln != nil:
		a.ln.Close()
	}
}

// report logs a trace's failure as a JSON record when the log is JSON: a
// log collector then gets no line of another format. main prints nothing
// more for it. A usage error stays a line for the person who typed it; a
// nil agent (its flags were wrong) logs nothing.
func (a *agent) report(err error) error {
	var ue *cli.UsageError
	if err == nil || a == nil || !a.json || errors.As(err, &ue) {
		return err
	}
	a.log.Error(err.Error())
	return &loggedError{err}
}

// loggedError is an error already written to the log.
type loggedError struct{ error }

func (e *loggedError) Unwrap() error { return e.error }
