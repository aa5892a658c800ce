package metrics

import (
	"github.com/ctprobe/ctprobe/tracer/kstat"

	"time"
)

// netnsState is what the Exporter keeps of one network namespace: when it
// was last seen, and its kernel counters as series that never go down.
type netnsState struct {
	// lastSeen is the last time the namespace was listed, or an incident
	// happened in it. Its series go Grace after that.
	lastSeen time.Time
	// listed: the last listing had it.
	listed bool
	// raw is the last reading of its counters; total what the series say.
	raw, total map[string]uint64
}

// seen returns the state of ns, made if new. Called with mu held.
func (e *Exporter) seen(ns uint64) *netnsState {
	st := e.netns[ns]
	if st == nil {
		st = &netnsState{}
		e.netns[ns] = st
	}
	return st
}

// count adds a reading of the namespace's counters to its series.
//
// The kernel's counters are per-CPU 32-bit values that wrap, so a reading
// may be lower than the last one: the growth in between is taken modulo
// 2^32 (kstat.Delta32), and the series keep growing. A namespace missing
// from the last listing may come back as a new namespace with the same
// inode (the kernel reuses nsfs inode numbers): then a counter lower than
// before is a fresh one, and all of it is growth. (A new namespace whose
// counters already passed the old ones' is taken for the old one.)
func (st *netnsState) count(values map[string]uint64) {
	if st.total == nil {
		st.raw, st.total = values, map[string]uint64{}
		for k, v := range values {
			st.total[k] = v
		}
		return
	}
	for k, v := range values {
		before, had := st.raw[k]
		switch {
		case !had:
			st.total[k] += v
		case !st.listed && v < before:
			st.total[k] += v
		default:
			st.total[k] += kstat.Delta32(v, before)
		}
	}
	st.raw = values
}

// Refresh reads every namespace's counters and forgets the namespaces gone
// for longer than the grace period. A scrape refreshes first; an agent
// also refreshes on a timer (Run), so that memory stays bounded and no
// 32-bit counter wraps twice unseen when nobody scrapes.
func (e *Exporter) Refresh() {
	e.refreshing.Lock()
	defer e.refreshing.Unlock()
	readings, err := e.opts.Namespaces()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.refreshLocked(readings, err)
}

func (e *Exporter) refreshLocked(readings map[uint64]kstat.Reading, err error) {
	e.refreshErr = err
	if err != nil {
		// Nothing is known to be gone: expire nothing.
		return
	}
	now := e.opts.Now()
	for ns, r := range readings {
		st := e.seen(ns)
		st.count(r.Counters.Values())
		st.lastSeen = now
	}
	for ns, st := range e.netns {
		_, st.listed = readings[ns]
		if now.Sub(st.lastSeen) > e.opts.Grace {
			e.forget(ns)
		}
	}
}

// forget drops every series of namespace ns. Called with mu held.
func (e *Exporter) forget(ns uint64) {
	delete(e.netns, ns)
	for k := range e.incidents {
		if k.netns == ns {
			delete(e.incidents, k)
		}
	}
	for k := range e.dnsLost {
		if k.netns == ns {
			delete(e.dnsLost, k)
		}
	}
}
