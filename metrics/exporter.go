// Package metrics exports what `ctprobe trace` sees as Prometheus metrics
// (docs/metrics.md): incidents by race, outcome and network namespace, the
// losers' DNS queries that were dropped, the kernel's own conntrack
// counters read at scrape time, lost records and the attach plan.
//
// The Exporter is a render.Renderer, fed beside the text or JSON output
// (render.Tee), so it sees the incidents, losses and plan the output shows
// and needs no hook of its own; and a prometheus.Collector, so a scrape
// reads it. The tracer library does not depend on this package or on
// client_golang.
package metrics

import (
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ctprobe/ctprobe/tracer/dnsmsg"
	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/kstat"
	"github.com/ctprobe/ctprobe/tracer/loss"
	"github.com/ctprobe/ctprobe/tracer/plan"
	"github.com/ctprobe/ctprobe/tracer/render"
	"github.com/ctprobe/ctprobe/tracer/session"
	"github.com/ctprobe/ctprobe/tracer/summary"
)

// DefaultGrace is how long the series of a network namespace outlive it:
// long enough for a few scrapes to see its last increments (rate() needs
// two samples), short enough that weeks of pod churn on a node leave no
// trace.
const DefaultGrace = 10 * time.Minute

// PodResolver names the pod a network namespace belongs to. With one, the
// per-namespace metrics carry "namespace" and "pod" labels too.
type PodResolver interface {
	// Pod returns the pod's Kubernetes namespace and name; "" for a
	// network namespace that is not a pod's.
	Pod(netns uint64) (namespace, pod string)
}

// Options configure an Exporter. Zero fields take the defaults.
type Options struct {
	Version string // ctprobe's, for ctprobe_build_info
	Kernel  string // the kernel release, for ctprobe_build_info
	// Grace is how long after a network namespace was last seen its series
	// are kept (DefaultGrace).
	Grace time.Duration
	// Pods, if set, adds the namespace and pod labels.
	Pods PodResolver
	// Now is the clock of the grace period (time.Now).
	Now func() time.Time
	// Namespaces reads the conntrack counters of every network namespace
	// on the host (kstat.Snapshot); its keys are also the namespaces that
	// exist.
	Namespaces func() (map[uint64]kstat.Reading, error)
}

// Progress says how far a session's reader got (session.Session.Progress).
type Progress func() (session.Progress, error)

// Exporter keeps ctprobe's metrics. Incidents and losses arrive from the
// trace's read loop, scrapes from the HTTP server: the loop never waits
// for a scrape's slow part (reading every namespace's counters), only for
// the copy of a few small maps.
type Exporter struct {
	opts     Options
	progress Progress
	desc     []*prometheus.Desc

	// refreshing serializes refreshes (scrapes and the timer's), so that
	// the namespaces' readings are counted in the order they were taken:
	// an older reading counted after a newer one would look like a 32-bit
	// wrap. The read loop never takes it.
	refreshing sync.Mutex

	mu        sync.Mutex
	incidents map[incidentKey]uint64
	dnsLost   map[dnsKey]uint64
	lost      map[loss.Kind]uint64
	points    []plan.Entry
	netns     map[uint64]*netnsState
	// refreshErr is the last failure to list the namespaces, reported by
	// the next scrape.
	refreshErr error
}

type incidentKey struct {
	race    incident.RaceType
	outcome incident.Outcome
	netns   uint64
}

type dnsKey struct {
	qtype string
	netns uint64
}

// New returns an Exporter.
func New(opts Options) *Exporter {
	if opts.Grace <= 0 {
		opts.Grace = DefaultGrace
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Namespaces == nil {
		opts.Namespaces = kstat.Snapshot
	}
	e := &Exporter{
		opts:      opts,
		incidents: map[incidentKey]uint64{},
		dnsLost:   map[dnsKey]uint64{},
		lost:      map[loss.Kind]uint64{},
		netns:     map[uint64]*netnsState{},
	}
	e.desc = e.descs()
	// Every known kind is exported from the start, at 0, so that a rate or
	// an alert on it has a series before the first loss.
	for _, k := range loss.Kinds {
		e.lost[k] = 0
	}
	return e
}

// FollowProgress exports the reader's progress (ctprobe_records_read_total
// and ctprobe_records_sent_total). Call it before the first scrape.
func (e *Exporter) FollowProgress(p Progress) { e.progress = p }

// Renderer methods: the Exporter counts what the trace sees.

var _ render.Renderer = (*Exporter)(nil)

// Incident counts an incident in the netns where it clashed, and the
// loser's DNS query when the kernel dropped it.
func (e *Exporter) Incident(inc *incident.Incident) error {
	ns := uint64(inc.Loser.Netns)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.incidents[incidentKey{race: inc.Race, outcome: inc.Outcome, netns: ns}]++
	if q := &inc.Loser.DNS; inc.Outcome == incident.OutcomeDropped && q.Valid && !q.Response {
		e.dnsLost[dnsKey{qtype: qtypeLabel(q.Type), netns: ns}]++
	}
	e.seen(ns).lastSeen = e.opts.Now()
	return nil
}

// Finding: findings (incident.Finding) are not exported as metrics yet;
// the trace prints them and its summary counts them.
func (e *Exporter) Finding(*incident.Finding) error { return nil }

// qtypeLabel keeps the label's values few: the common types by name, the
// rest (and a query cut before its type) as "other".
func qtypeLabel(t uint16) string {
	if m, ok := dnsmsg.TypeMnemonic(t); ok {
		return m
	}
	return "other"
}

// Lost counts lost records by kind.
func (e *Exporter) Lost(l loss.Count) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lost[l.Kind] += l.Count
	return nil
}

// Plan keeps the attached points for ctprobe_probe_info.
func (e *Exporter) Plan(p []plan.Entry) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.points = e.points[:0]
	for _, en := range p {
		if en.Status == plan.Attached {
			e.points = append(e.points, en)
		}
	}
	return nil
}

func (e *Exporter) Event(*event.Event) error       { return nil }
func (e *Exporter) Summary(*summary.Summary) error { return nil }
func (e *Exporter) Probes(*render.Probes) error    { return nil }
func (e *Exporter) Warning(string) error           { return nil }
func (e *Exporter) Header(*render.Header) error    { return nil }
func (e *Exporter) Flush() error                   { return nil }

// Families are the metrics, in the order a scrape lists them.
// docs/metrics.md documents each (TestEveryMetricDocumented).
var Families = []Family{
	{"ctprobe_incidents_total", "Conntrack insertion clashes ctprobe explained, by race type (0-5), how the kernel settled them, and the network namespace (inode) where they clashed.", []string{"race", "outcome", "netns"}},
	{"ctprobe_dns_queries_lost_total", "DNS queries the kernel dropped as the loser of a clash, by query type and network namespace.", []string{"qtype", "netns"}},
	{"ctprobe_conntrack_stat_total", "The kernel's conntrack counters (/proc/net/stat/nf_conntrack, summed over CPUs) per network namespace, read at scrape time.", []string{"stat", "netns"}},
	{"ctprobe_records_lost_total", "Records ctprobe could not deliver or pair, by kind (the summary's lost lines).", []string{"kind"}},
	{"ctprobe_records_read_total", "Records read from the ring buffer and through the pipeline.", nil},
	{"ctprobe_records_sent_total", "Records the probes offered the ring buffer: read, lost to a full buffer, or not read yet.", nil},
	{"ctprobe_probe_info", "1 for each attached probe point: the kernel function and how it is attached.", []string{"point", "function", "attach"}},
	{"ctprobe_build_info", "1, labelled with ctprobe's version and the kernel release.", []string{"version", "kernel"}},
}

// Family is one metric: its name, help and labels. A family with a netns
// label also gets the pod labels when the Exporter has a PodResolver.
type Family struct {
	Name   string
	Help   string
	Labels []string
}

// Indexes into Families.
const (
	famIncidents = iota
	famDNSLost
	famConntrack
	famLost
	famRead
	famSent
	famProbe
	famBuild
)

// podLabels are the labels a PodResolver adds after netns.
var podLabels = []string{"namespace", "pod"}

func (f Family) perNetns() bool { return slices.Contains(f.Labels, "netns") }

// descs makes the descriptions of Families for this Exporter's labels.
func (e *Exporter) descs() []*prometheus.Desc {
	out := make([]*prometheus.Desc, len(Families))
	for i, f := range Families {
		labels := f.Labels
		if e.opts.Pods != nil && f.perNetns() {
			labels = append(slices.Clone(labels), podLabels...)
		}
		out[i] = prometheus.NewDesc(f.Name, f.Help, labels, nil)
	}
	return out
}
