package metrics

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ctprobe/ctprobe/tracer/session"
)

// CheckAddress says whether addr is a metrics address: HOST:PORT or :PORT
// (all addresses), HOST an IP address or localhost.
func CheckAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want HOST:PORT or :PORT (e.g. :9965)", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("%q: port %q is not a number from 1 to 65535", addr, port)
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		return fmt.Errorf("%q: host %q is not an IP address (or localhost)", addr, host)
	}
	return nil
}

// Listen opens the metrics address (CheckAddress). It is opened before the
// probes are loaded, so that a port in use fails at once.
func Listen(addr string) (net.Listener, error) {
	if err := CheckAddress(addr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		var se *net.OpError
		if errors.As(err, &se) && se.Err != nil {
			err = se.Err
		}
		return nil, fmt.Errorf("listen on %s: %v", addr, err)
	}
	return ln, nil
}

// StallAfter is how long the read loop may not run before /healthz fails.
// The loop runs at least every 200 ms (session's poll); a capture rotation
// or a summary reads every namespace's counters, which takes a second or
// two on a node with hundreds of pods.
const StallAfter = 15 * time.Second

// Health says whether a session is healthy at now: its probes attached and
// its read loop running.
func Health(l session.Liveness, now time.Time) error {
	if !l.Attached {
		return errors.New("the probes are detached")
	}
	if d := now.Sub(l.LastLoop); d > StallAfter {
		return fmt.Errorf("the reader is stalled: its loop last ran %s ago", d.Round(time.Second))
	}
	return nil
}

// Handler serves /metrics (the Exporter, in the Prometheus text format)
// and /healthz (200 "ok", or 503 and what is wrong, as health says).
// Errors of a scrape are logged; the page then has every metric that
// could be read.
func Handler(e *Exporter, health func() error, log *slog.Logger) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(e)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      slogPrinter{log},
	}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := health(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, err)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// slogPrinter is promhttp's error log.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Warn("metrics scrape", "error", fmt.Sprint(v...)) }

// Serve serves h on ln until Close; timeouts keep a stuck client from
// holding a connection forever.
func Serve(ln net.Listener, h http.Handler) *http.Server {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
	go func() { _ = srv.Serve(ln) }() // ErrServerClosed after Close
	return srv
}
