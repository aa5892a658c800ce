package metrics

import (
	"errors"
	"math"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/ctprobe/ctprobe/tracer/dnsmsg"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/kstat"
)

const (
	hostNS uint64 = 4026531840
	podNS  uint64 = 4026532500
)

func (p page) value(t *testing.T, key string) (float64, bool) {
	t.Helper()
	v, ok := p.series[key]
	return v, ok
}

// The series of a namespace that went stay for the grace period after it
// was last seen, then go, all of them; those of a namespace that is still
// there stay however long nothing happens in it. A fake clock, no sleeps.
func TestNetnsSeriesExpire(t *testing.T) {
	h := newFakeHost()
	h.set(hostNS, counters(1, 0, 0))
	h.set(podNS, counters(4, 1, 1))
	e := h.exporter(nil)
	e.Incident(dnsLoser(incident.OutcomeDropped, uint32(podNS), dnsmsg.TypeAAAA, false))
	e.Incident(dnsLoser(incident.OutcomeDropped, uint32(hostNS), dnsmsg.TypeA, false))
	pod := []string{
		`ctprobe_incidents_total{netns="4026532500",outcome="dropped",race="3"}`,
		`ctprobe_dns_queries_lost_total{netns="4026532500",qtype="AAAA"}`,
		`ctprobe_conntrack_stat_total{netns="4026532500",stat="clash_resolve"}`,
	}
	host := []string{
		`ctprobe_incidents_total{netns="4026531840",outcome="dropped",race="3"}`,
		`ctprobe_conntrack_stat_total{netns="4026531840",stat="clash_resolve"}`,
	}
	present := func(when string, keys []string, want bool) {
		t.Helper()
		p := scrape(t, e)
		for _, k := range keys {
			if _, ok := p.value(t, k); ok != want {
				t.Errorf("%s: %s present %v, want %v", when, k, ok, want)
			}
		}
	}
	present("both namespaces there", append(pod, host...), true)

	h.remove(podNS) // the pod is deleted
	h.advance(time.Minute)
	present("a minute after the pod went", pod, true)
	h.advance(DefaultGrace - time.Minute)
	present("the grace period after the pod was last seen", pod, true)
	h.advance(time.Second)
	present("past the grace period", pod, false)
	present("past the grace period, the host's", host, true)

	// Without scrapes, the timer's refresh forgets them too.
	h.set(podNS, counters(1, 0, 0))
	e.Refresh()
	h.remove(podNS)
	h.advance(DefaultGrace + time.Second)
	e.Refresh()
	e.mu.Lock()
	_, kept := e.netns[podNS]
	e.mu.Unlock()
	if kept {
		t.Error("Refresh kept a namespace gone for longer than the grace period")
	}

	// An incident in a namespace no listing saw (it came and went between
	// two) counts from the incident.
	const brief = 4026532900
	e.Incident(dnsLoser(incident.OutcomeDropped, brief, dnsmsg.TypeA, false))
	h.advance(DefaultGrace)
	present("an unlisted namespace, the grace period after its incident", []string{`ctprobe_incidents_total{netns="4026532900",outcome="dropped",race="3"}`}, true)
	h.advance(time.Second)
	present("an unlisted namespace, past the grace period", []string{`ctprobe_incidents_total{netns="4026532900",outcome="dropped",race="3"}`}, false)
}

// A listing that fails expires nothing: a namespace is gone only when a
// listing no longer has it. The scrape still serves the other metrics.
func TestNetnsListingFails(t *testing.T) {
	h := newFakeHost()
	h.set(podNS, counters(1, 0, 0))
	e := h.exporter(nil)
	e.Incident(dnsLoser(incident.OutcomeDropped, uint32(podNS), dnsmsg.TypeA, false))
	scrape(t, e)
	h.mu.Lock()
	h.err = errors.New("open /proc: too many open files")
	h.mu.Unlock()
	h.advance(2 * DefaultGrace)
	p := scrape(t, e)
	if _, ok := p.value(t, `ctprobe_incidents_total{netns="4026532500",outcome="dropped",race="3"}`); !ok {
		t.Error("a failed listing expired a namespace")
	}
	if _, ok := p.value(t, `ctprobe_build_info{kernel="6.12.0-test",version="v1.2.3"}`); !ok {
		t.Error("a failed listing took the other metrics off the page")
	}
}

// The kernel's counters are 32-bit per CPU and wrap; the series keeps
// growing through a wrap. A namespace inode that comes back after a
// listing without it, with lower counters, is a new namespace: its counts
// are added, and the series does not go down.
func TestConntrackSeriesNeverGoDown(t *testing.T) {
	h := newFakeHost()
	key := `ctprobe_conntrack_stat_total{netns="4026532500",stat="insert_failed"}`
	e := h.exporter(nil)
	steps := []struct {
		listed bool
		raw    uint64 // the kernel's sum over CPUs
		want   float64
	}{
		{true, 10, 10},
		{true, math.MaxUint32 - 5, math.MaxUint32 - 5},
		{true, 4, math.MaxUint32 + 5}, // one CPU's counter wrapped: 10 more
		{true, 14, math.MaxUint32 + 15},
		{false, 0, math.MaxUint32 + 15}, // gone from a listing
		{true, 3, math.MaxUint32 + 18},  // a new namespace with the same inode
		{true, 9, math.MaxUint32 + 24},
	}
	for i, s := range steps {
		if s.listed {
			h.set(podNS, kstat.Counters{InsertFailed: s.raw})
		} else {
			h.remove(podNS)
		}
		got, ok := scrape(t, e).value(t, key)
		if !ok || got != s.want {
			t.Errorf("step %d (raw %d, listed %v): %v (present %v), want %v", i, s.raw, s.listed, got, ok, s.want)
		}
	}
}

type fakePods map[uint64][2]string

func (f fakePods) Pod(ns uint64) (string, string) { return f[ns][0], f[ns][1] }

// With a PodResolver, every per-namespace series names its pod; the other
// series keep their labels.
func TestPodLabels(t *testing.T) {
	h := newFakeHost()
	h.set(podNS, counters(1, 0, 0))
	e := h.exporter(fakePods{podNS: {"kube-system", "coredns-5d78c9869d-x2x7v"}})
	e.Incident(dnsLoser(incident.OutcomeDropped, uint32(podNS), dnsmsg.TypeA, false))
	e.Incident(dnsLoser(incident.OutcomeDropped, uint32(hostNS), dnsmsg.TypeA, false))
	p := scrape(t, e)
	for _, k := range []string{
		`ctprobe_incidents_total{namespace="kube-system",netns="4026532500",outcome="dropped",pod="coredns-5d78c9869d-x2x7v",race="3"}`,
		`ctprobe_dns_queries_lost_total{namespace="kube-system",netns="4026532500",pod="coredns-5d78c9869d-x2x7v",qtype="A"}`,
		`ctprobe_conntrack_stat_total{namespace="kube-system",netns="4026532500",pod="coredns-5d78c9869d-x2x7v",stat="clash_resolve"}`,
		// A namespace that is no pod's: empty labels, which Prometheus
		// stores as absent.
		`ctprobe_incidents_total{namespace="",netns="4026531840",outcome="dropped",pod="",race="3"}`,
		`ctprobe_build_info{kernel="6.12.0-test",version="v1.2.3"}`,
	} {
		if _, ok := p.value(t, k); !ok {
			t.Errorf("%s is not on the page:\n%s", k, p.text)
		}
	}
}

// Scrapes from several Prometheus servers at once, and the timer's
// refresh, count the namespaces' readings in the order they were taken:
// one at a time. (Two at once could count an older reading after a newer
// one, which looks like a 32-bit wrap: a jump of 2^32.)
func TestRefreshesOneAtATime(t *testing.T) {
	h := newFakeHost()
	var mu sync.Mutex
	var inFlight, most int
	var taken uint64
	e := New(Options{Now: h.Now, Namespaces: func() (map[uint64]kstat.Reading, error) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		taken += 10
		c := kstat.Counters{InsertFailed: taken}
		mu.Unlock()
		runtime.Gosched()
		mu.Lock()
		inFlight--
		mu.Unlock()
		return map[uint64]kstat.Reading{podNS: {Counters: c}}, nil
	}})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				e.Refresh()
				if _, err := prometheusGather(e); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if most != 1 {
		t.Errorf("%d readings at once", most)
	}
	got, _ := scrape(t, e).value(t, `ctprobe_conntrack_stat_total{netns="4026532500",stat="insert_failed"}`)
	if got != float64(taken) {
		t.Errorf("insert_failed %v, want the last reading, %d", got, taken)
	}
}
