package metrics

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var _ prometheus.Collector = (*Exporter)(nil)

// Describe sends the description of every family.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range e.desc {
		ch <- d
	}
}

// Collect is a scrape: the reader's progress first, then every namespace's
// counters (slow: each is read inside its namespace, without the lock),
// then a copy of the series under the lock.
//
// Progress comes first so that a scrape whose records_sent equals
// records_read plus the ring buffer's losses also holds every incident of
// those records: an incident is counted before its record is.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	var out []prometheus.Metric
	if e.progress != nil {
		p, err := e.progress()
		if err != nil {
			out = append(out, prometheus.NewInvalidMetric(e.desc[famSent], err))
		} else {
			out = append(out,
				e.counter(famRead, p.Read),
				e.counter(famSent, p.Sent))
		}
	}
	e.refreshing.Lock()
	readings, err := e.opts.Namespaces()
	e.mu.Lock()
	e.refreshLocked(readings, err)
	out = e.appendLocked(out)
	e.mu.Unlock()
	e.refreshing.Unlock()
	for _, m := range out {
		ch <- m
	}
}

func (e *Exporter) counter(fam int, v uint64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(e.desc[fam], prometheus.CounterValue, float64(v), labels...)
}

func (e *Exporter) gauge(fam int, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(e.desc[fam], prometheus.GaugeValue, v, labels...)
}

// netnsLabels are the labels that name namespace ns: its inode, and with a
// PodResolver its pod.
func (e *Exporter) netnsLabels(ns uint64) []string {
	l := []string{strconv.FormatUint(ns, 10)}
	if e.opts.Pods != nil {
		namespace, pod := e.opts.Pods.Pod(ns)
		l = append(l, namespace, pod)
	}
	return l
}

// appendLocked appends every series. Called with mu held.
func (e *Exporter) appendLocked(out []prometheus.Metric) []prometheus.Metric {
	if e.refreshErr != nil {
		out = append(out, prometheus.NewInvalidMetric(e.desc[famConntrack], fmt.Errorf("reading the network namespaces' conntrack counters: %w", e.refreshErr)))
	}
	for k, v := range e.incidents {
		out = append(out, e.counter(famIncidents, v, append([]string{strconv.Itoa(int(k.race)), string(k.outcome)}, e.netnsLabels(k.netns)...)...))
	}
	for k, v := range e.dnsLost {
		out = append(out, e.counter(famDNSLost, v, append([]string{k.qtype}, e.netnsLabels(k.netns)...)...))
	}
	for ns, st := range e.netns {
		for stat, v := range st.total {
			out = append(out, e.counter(famConntrack, v, append([]string{stat}, e.netnsLabels(ns)...)...))
		}
	}
	for k, v := range e.lost {
		out = append(out, e.counter(famLost, v, string(k)))
	}
	for _, p := range e.points {
		out = append(out, e.gauge(famProbe, 1, p.Point, p.Function, string(p.Attach)))
	}
	return append(out, e.gauge(famBuild, 1, e.opts.Version, e.opts.Kernel))
}

// Run refreshes every interval until ctx ends (Refresh).
func (e *Exporter) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.Refresh()
		}
	}
}
