package metrics

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ctprobe/ctprobe/tracer/dnsmsg"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/kstat"
	"github.com/ctprobe/ctprobe/tracer/loss"
	"github.com/ctprobe/ctprobe/tracer/plan"
	"github.com/ctprobe/ctprobe/tracer/session"
)

// fakeHost stands in for the host's network namespaces and their counters,
// and for the clock.
type fakeHost struct {
	mu       sync.Mutex
	now      time.Time
	counters map[uint64]kstat.Counters // the namespaces that exist
	err      error
}

func newFakeHost() *fakeHost {
	return &fakeHost{now: time.Unix(1_700_000_000, 0), counters: map[uint64]kstat.Counters{}}
}

func (h *fakeHost) Now() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.now
}

func (h *fakeHost) advance(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.now = h.now.Add(d)
}

func (h *fakeHost) set(ns uint64, c kstat.Counters) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.counters[ns] = c
}

func (h *fakeHost) remove(ns uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.counters, ns)
}

func (h *fakeHost) Namespaces() (map[uint64]kstat.Reading, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		return nil, h.err
	}
	out := map[uint64]kstat.Reading{}
	for ns, c := range h.counters {
		out[ns] = kstat.Reading{Namespace: kstat.Namespace{Inode: ns}, Counters: c}
	}
	return out, nil
}

func (h *fakeHost) exporter(pods PodResolver) *Exporter {
	return New(Options{Version: "v1.2.3", Kernel: "6.12.0-test", Now: h.Now, Namespaces: h.Namespaces, Pods: pods})
}

// counters of a 5.15+ kernel, which has every column.
func counters(clashResolve, insertFailed, drop uint64) kstat.Counters {
	return kstat.Counters{ClashResolve: clashResolve, HasClashResolve: true, InsertFailed: insertFailed, Drop: drop, HasChainTooLong: true}
}

// page is one scrape: its text and its series, keyed name{label="value",...}
// with the labels sorted.
type page struct {
	text   string
	series map[string]float64
}

func scrape(t *testing.T, e *Exporter) page {
	t.Helper()
	srv := httptest.NewServer(Handler(e, func() error { return nil }, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %s\n%s", resp.Status, body)
	}
	p := page{text: string(body), series: map[string]float64{}}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(p.text))
	if err != nil {
		t.Fatalf("the page does not parse: %v\n%s", err, body)
	}
	for name, f := range fams {
		for _, m := range f.Metric {
			var labels []string
			for _, l := range m.Label {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			slices.Sort(labels)
			key := name + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.Counter != nil:
				p.series[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				p.series[key] = m.Gauge.GetValue()
			}
		}
	}
	return p
}

// withPrefix is the series of one metric.
func (p page) withPrefix(name string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range p.series {
		if strings.HasPrefix(k, name+"{") {
			out[k] = v
		}
	}
	return out
}

func dnsLoser(outcome incident.Outcome, netns uint32, qtype uint16, response bool) *incident.Incident {
	return &incident.Incident{
		Race: incident.RaceEndpoints, Outcome: outcome,
		Loser: incident.Packet{Netns: netns, DNS: incident.DNSQuery{Type: qtype, Valid: true, Response: response}},
	}
}

// Every metric of the issue is on the page with its labels, and each value
// is what was fed: incidents per race, outcome and netns; the dropped
// losers' queries (not the settled ones, nor responses); losses by kind;
// the kernel's counters; the attached points.
func TestExporterPage(t *testing.T) {
	h := newFakeHost()
	h.set(4026531840, counters(7, 2, 3))
	h.set(4026532000, kstat.Counters{InsertFailed: 5, Drop: 1}) // a kernel before 5.10: no clash_resolve
	e := h.exporter(nil)
	e.Plan([]plan.Entry{
		{Point: "clash", Function: "nf_ct_resolve_clash", Attach: plan.Fentry, Status: plan.Attached},
		{Point: "nat", Function: "get_unique_tuple", Attach: plan.Kprobe, Status: plan.Unused},
	})
	feed := []*incident.Incident{
		dnsLoser(incident.OutcomeDropped, 4026531840, dnsmsg.TypeA, false),
		dnsLoser(incident.OutcomeDropped, 4026531840, dnsmsg.TypeAAAA, false),
		dnsLoser(incident.OutcomeDropped, 4026531840, dnsmsg.TypeAAAA, false),
		dnsLoser(incident.OutcomeDropped, 4026531840, 0, false),             // cut before its type
		dnsLoser(incident.OutcomeDropped, 4026531840, dnsmsg.TypeA, true),   // a response: not a query
		dnsLoser(incident.OutcomeNATClash, 4026531840, dnsmsg.TypeA, false), // went through
		{Race: incident.RaceIdentical, Outcome: incident.OutcomeMerged, Loser: incident.Packet{Netns: 4026532000}},
		{Race: incident.RaceUnknown, Outcome: incident.OutcomeUnknown, Loser: incident.Packet{Netns: 4026532000}},
	}
	for _, inc := range feed {
		e.Incident(inc)
	}
	e.Lost(loss.Count{Kind: loss.Ringbuf, CPU: 0, Count: 4})
	e.Lost(loss.Count{Kind: loss.Ringbuf, CPU: 1, Count: 1})
	e.FollowProgress(func() (session.Progress, error) { return session.Progress{Read: 40, Sent: 45}, nil })
	p := scrape(t, e)

	want := map[string]float64{
		`ctprobe_incidents_total{netns="4026531840",outcome="dropped",race="3"}`:           5,
		`ctprobe_incidents_total{netns="4026531840",outcome="nat-clash",race="3"}`:         1,
		`ctprobe_incidents_total{netns="4026532000",outcome="merged",race="1"}`:            1,
		`ctprobe_incidents_total{netns="4026532000",outcome="unknown",race="0"}`:           1,
		`ctprobe_dns_queries_lost_total{netns="4026531840",qtype="A"}`:                     1,
		`ctprobe_dns_queries_lost_total{netns="4026531840",qtype="AAAA"}`:                  2,
		`ctprobe_dns_queries_lost_total{netns="4026531840",qtype="other"}`:                 1,
		`ctprobe_conntrack_stat_total{netns="4026531840",stat="clash_resolve"}`:            7,
		`ctprobe_conntrack_stat_total{netns="4026531840",stat="insert_failed"}`:            2,
		`ctprobe_conntrack_stat_total{netns="4026531840",stat="drop"}`:                     3,
		`ctprobe_conntrack_stat_total{netns="4026531840",stat="chain_too_long"}`:           0,
		`ctprobe_conntrack_stat_total{netns="4026531840",stat="early_drop"}`:               0,
		`ctprobe_conntrack_stat_total{netns="4026531840",stat="invalid"}`:                  0,
		`ctprobe_conntrack_stat_total{netns="4026532000",stat="insert_failed"}`:            5,
		`ctprobe_conntrack_stat_total{netns="4026532000",stat="drop"}`:                     1,
		`ctprobe_conntrack_stat_total{netns="4026532000",stat="early_drop"}`:               0,
		`ctprobe_conntrack_stat_total{netns="4026532000",stat="invalid"}`:                  0,
		`ctprobe_probe_info{attach="fentry",function="nf_ct_resolve_clash",point="clash"}`: 1,
		`ctprobe_build_info{kernel="6.12.0-test",version="v1.2.3"}`:                        1,
		`ctprobe_records_read_total{}`:                                                     40,
		`ctprobe_records_sent_total{}`:                                                     45,
	}
	for _, k := range loss.Kinds {
		want[fmt.Sprintf("ctprobe_records_lost_total{kind=%q}", k)] = 0
	}
	want[`ctprobe_records_lost_total{kind="ringbuf"}`] = 5
	if !maps.Equal(p.series, want) {
		for k, v := range want {
			if got, ok := p.series[k]; !ok || got != v {
				t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
			}
		}
		for k, v := range p.series {
			if _, ok := want[k]; !ok {
				t.Errorf("unexpected series %s = %v", k, v)
			}
		}
	}
	for _, f := range Families {
		if !strings.Contains(p.text, "# TYPE "+f.Name+" ") {
			t.Errorf("%s is not on the page", f.Name)
		}
	}
}

// promtool, Prometheus's own checker, accepts the page (naming, help,
// types, counters ending in _total).
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed: scripts/deps.sh prometheus (make test installs it)")
	}
	h := newFakeHost()
	h.set(4026531840, counters(1, 1, 1))
	e := h.exporter(nil)
	e.Plan([]plan.Entry{{Point: "clash", Function: "nf_ct_resolve_clash", Attach: plan.Kprobe, Status: plan.Attached}})
	e.Incident(dnsLoser(incident.OutcomeDropped, 4026531840, dnsmsg.TypeA, false))
	e.FollowProgress(func() (session.Progress, error) { return session.Progress{Read: 2, Sent: 2}, nil })
	p := scrape(t, e)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(p.text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s\npage:\n%s", err, out, p.text)
	}
}

// prometheusGather scrapes e without HTTP.
func prometheusGather(e *Exporter) ([]*dto.MetricFamily, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(e); err != nil {
		return nil, err
	}
	return reg.Gather()
}
