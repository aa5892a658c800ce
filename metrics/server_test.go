package metrics

import (
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctprobe/ctprobe/tracer/dnsmsg"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/kstat"
	"github.com/ctprobe/ctprobe/tracer/loss"
	"github.com/ctprobe/ctprobe/tracer/session"
)

// A scrape reads every namespace's counters, which is slow on a busy node.
// Meanwhile the read loop goes on: here the scrape's read is held until the
// loop has fed every incident and loss, which would never happen if the
// loop waited for the scrape; and nothing fed during the scrape is lost.
func TestScrapeDoesNotBlockTheReader(t *testing.T) {
	h := newFakeHost()
	h.set(podNS, counters(0, 0, 0))
	inScrape, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	slow := func() (map[uint64]kstat.Reading, error) {
		once.Do(func() {
			close(inScrape)
			<-release
		})
		return h.Namespaces()
	}
	e := New(Options{Now: h.Now, Namespaces: slow})
	e.Incident(dnsLoser(incident.OutcomeDropped, uint32(podNS), dnsmsg.TypeA, false))
	done := make(chan page)
	go func() { done <- scrape(t, e) }()
	<-inScrape
	const n = 10000
	for range n {
		e.Incident(dnsLoser(incident.OutcomeDropped, uint32(podNS), dnsmsg.TypeA, false))
		e.Lost(loss.Count{Kind: loss.Ringbuf, Count: 1})
	}
	close(release)
	first := <-done
	last := scrape(t, e)
	key := `ctprobe_incidents_total{netns="4026532500",outcome="dropped",race="3"}`
	if v := last.series[key]; v != n+1 {
		t.Errorf("after the scrape: %v incidents, want %d", v, n+1)
	}
	if v := last.series[`ctprobe_records_lost_total{kind="ringbuf"}`]; v != n {
		t.Errorf("after the scrape: %v lost, want %d", v, n)
	}
	if v := first.series[key]; v < 1 || v > n+1 {
		t.Errorf("the slow scrape saw %v incidents, want 1 to %d", v, n+1)
	}
}

// /healthz is 200 while the probes are attached and the loop runs, and 503
// with the reason when they were detached or the loop stalled.
func TestHealthz(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	cases := []struct {
		l    session.Liveness
		code int
		body string
	}{
		{session.Liveness{Attached: true, LastLoop: now.Add(-time.Second)}, 200, "ok"},
		{session.Liveness{Attached: true, LastLoop: now.Add(-StallAfter)}, 200, "ok"},
		{session.Liveness{Attached: false, LastLoop: now}, 503, "the probes are detached"},
		{session.Liveness{Attached: true, LastLoop: now.Add(-StallAfter - 2*time.Second)}, 503, "the reader is stalled: its loop last ran 17s ago"},
	}
	for _, c := range cases {
		srv := httptest.NewServer(Handler(New(Options{}), func() error { return Health(c.l, now) }, slog.New(slog.DiscardHandler)))
		resp, err := srv.Client().Get(srv.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		srv.Close()
		if resp.StatusCode != c.code || strings.TrimSpace(string(body)) != c.body {
			t.Errorf("%+v: %d %q, want %d %q", c.l, resp.StatusCode, body, c.code, c.body)
		}
	}
}

// A malformed or busy address is one line that names it.
func TestListenErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for addr, want := range map[string]string{
		"9965":                    `"9965": want HOST:PORT or :PORT (e.g. :9965)`,
		":http":                   `":http": port "http" is not a number from 1 to 65535`,
		":0":                      `":0": port "0" is not a number from 1 to 65535`,
		":70000":                  `":70000": port "70000" is not a number from 1 to 65535`,
		"node1:9965":              `"node1:9965": host "node1" is not an IP address (or localhost)`,
		busy.Addr().String():      "listen on " + busy.Addr().String() + ": bind: address already in use",
		"[::1]:9965:1":            `"[::1]:9965:1": want HOST:PORT or :PORT (e.g. :9965)`,
		"192.0.2.1:9965":          "listen on 192.0.2.1:9965: bind: cannot assign requested address",
		"localhost:" + port(busy): "listen on localhost:" + port(busy) + ": bind: address already in use",
	} {
		ln, err := Listen(addr)
		if err == nil {
			ln.Close()
			t.Errorf("Listen(%q) succeeded", addr)
			continue
		}
		if err.Error() != want {
			t.Errorf("Listen(%q): %q, want %q", addr, err, want)
		}
	}
}

func port(ln interface{ Addr() net.Addr }) string {
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	return p
}
