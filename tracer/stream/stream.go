// Package stream turns ring-buffer records into ctprobe's output. Live
// tracing and `ctprobe report` both feed it, record by record, so a report of
// a capture prints what the live run printed.
package stream

import (
	"fmt"
	"sort"
	"time"

	"github.com/ctprobe/ctprobe/tracer/capture"
	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/kstat"
	"github.com/ctprobe/ctprobe/tracer/render"
)

// Processor decodes, correlates and renders records.
type Processor struct {
	out      render.Renderer
	all      bool
	corr     *incident.Correlator
	total    *render.Tally
	interval *render.Tally
	ev       event.Event
	stats    Stats
}

// Stats count what went through a Processor.
type Stats struct {
	Records      uint64
	DecodeErrors uint64
	Incidents    uint64
}

// New returns a Processor writing to out; all prints every event as well
// as the incidents.
func New(out render.Renderer, all bool, start time.Time) *Processor {
	return &Processor{
		out:      out,
		all:      all,
		corr:     incident.New(incident.Options{}),
		total:    render.NewTally(start),
		interval: render.NewTally(start),
	}
}

// Stats returns the counts so far.
func (p *Processor) Stats() Stats { return p.stats }

// Record handles one raw ring-buffer record.
func (p *Processor) Record(raw []byte) error {
	p.stats.Records++
	if err := event.Decode(raw, &p.ev); err != nil {
		p.stats.DecodeErrors++
		// One warning per power of two keeps a stream of bad records visible
		// without flooding the output.
		if n := p.stats.DecodeErrors; n&(n-1) == 0 {
			return p.out.Warning(fmt.Sprintf("%d undecodable records so far: %v", n, err))
		}
		return nil
	}
	if p.all {
		if err := p.out.Event(&p.ev); err != nil {
			return err
		}
	}
	return p.incidents(p.corr.Add(&p.ev))
}

func (p *Processor) incidents(incs []incident.Incident) error {
	for i := range incs {
		p.stats.Incidents++
		p.total.Add(&incs[i])
		p.interval.Add(&incs[i])
		if err := p.out.Incident(&incs[i]); err != nil {
			return err
		}
	}
	return nil
}

// Idle tells the correlator that kernel time reached now while no record
// arrived, so that incidents waiting for late events are printed without
// waiting for the next record.
func (p *Processor) Idle(now uint64) error {
	return p.incidents(p.corr.Advance(now))
}

// Lost reports records that never arrived.
func (p *Processor) Lost(l render.Lost) error {
	if l.Count == 0 {
		return nil
	}
	p.total.AddLost(l)
	p.interval.AddLost(l)
	return p.out.Lost(l)
}

// Interval prints the summary of the interval that ends now and starts the
// next one.
func (p *Processor) Interval(now time.Time, counters []render.NetnsCounters) error {
	err := p.out.Summary(p.interval.Summary(now, counters, false))
	p.interval.Reset(now)
	return err
}

// Finish reports what the correlator still held and prints the summary of
// the whole run, which it returns.
func (p *Processor) Finish(end time.Time, counters []render.NetnsCounters) (*render.Summary, error) {
	if err := p.incidents(p.corr.Flush()); err != nil {
		return nil, err
	}
	s := p.total.Summary(end, counters, true)
	return s, p.out.Summary(s)
}

// Snapshot reads every network namespace's conntrack counters in the form
// capture files keep them.
func Snapshot() ([]capture.NetnsCounters, error) {
	readings, err := kstat.Snapshot()
	if err != nil {
		return nil, err
	}
	out := make([]capture.NetnsCounters, 0, len(readings))
	for ino, r := range readings {
		out = append(out, capture.NetnsCounters{Netns: ino, Name: r.Name, Values: r.Counters.Values()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Netns < out[j].Netns })
	return out, nil
}

// CounterDelta is how much each namespace's counters grew between two
// snapshots, for the namespaces where any grew. A namespace missing from
// before was created in between, so it starts from zero; one missing from
// after is gone and cannot be read. The kernel's per-CPU counters are 32-bit
// and wrap (kstat.Delta32).
func CounterDelta(before, after []capture.NetnsCounters) []render.NetnsCounters {
	base := make(map[uint64]map[string]uint64, len(before))
	for _, b := range before {
		base[b.Netns] = b.Values
	}
	var out []render.NetnsCounters
	for _, a := range after {
		d := make(map[string]uint64, len(a.Values))
		moved := false
		for k, v := range a.Values {
			d[k] = kstat.Delta32(v, base[a.Netns][k])
			moved = moved || d[k] != 0
		}
		if moved {
			out = append(out, render.NetnsCounters{Netns: a.Netns, Name: a.Name, Delta: d})
		}
	}
	return out
}
