// Package stream turns ring-buffer records into ctprobe's output. Live
// tracing and `ctprobe report` both feed it, record by record, so a report of
// a capture prints what the live run printed.
package stream

import (
	"fmt"
	"time"

	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/kstat"
	"github.com/ctprobe/ctprobe/tracer/loss"
	"github.com/ctprobe/ctprobe/tracer/names"
	"github.com/ctprobe/ctprobe/tracer/render"
	"github.com/ctprobe/ctprobe/tracer/selector"
	"github.com/ctprobe/ctprobe/tracer/summary"
)

// Processor decodes, correlates and renders records.
type Processor struct {
	out      render.Renderer
	all      bool
	corr     *incident.Correlator
	total    *summary.Tally
	interval *summary.Tally
	names    names.Source
	sel      *selector.Selector
	ev       event.Event
	stats    Stats
}

// Stats count what went through a Processor.
type Stats struct {
	Records      uint64
	DecodeErrors uint64
	Incidents    uint64
	Findings     uint64
}

// New returns a Processor writing to out; all prints every event as well
// as the incidents (mode.Mode.PrintsEvents); clashProbed says that the
// plan attached nf_ct_resolve_clash (incident.Options.ClashProbed).
func New(out render.Renderer, all bool, start time.Time, clashProbed bool) *Processor {
	return NewWithCorrelator(out, all, start, incident.Options{ClashProbed: clashProbed})
}

// NewWithCorrelator is New with the correlator's options: its tables take
// about 20 MB by default, which a test or fuzz target that builds a
// processor per input sizes down.
func NewWithCorrelator(out render.Renderer, all bool, start time.Time, corr incident.Options) *Processor {
	return &Processor{
		out:      out,
		all:      all,
		corr:     incident.New(corr),
		total:    summary.NewTally(start),
		interval: summary.NewTally(start),
	}
}

// SetNames names the pod and container of both packets of every incident,
// and of every finding's flow, from src (nil: none). Lookups happen per
// incident and finding, never per event.
func (p *Processor) SetNames(src names.Source) { p.names = src }

// Select prints and counts only what sel selects (nil: everything); the
// correlator still sees every record, so that incidents are whole. sel
// must be bound to the records' boot (selector.Selector.ForBoot). The
// summaries say what was selected.
func (p *Processor) Select(sel *selector.Selector) {
	p.sel = sel
	p.total.Selection, p.interval.Selection = sel.String(), sel.String()
	leftOut := sel != nil && !sel.CountersComparable()
	p.total.CountersLeftOut, p.interval.CountersLeftOut = leftOut, leftOut
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
	if p.all && p.sel.Event(&p.ev) {
		p.corr.Prefetch(&p.ev)
		if err := p.out.Event(&p.ev); err != nil {
			return err
		}
	}
	return p.incidents(p.corr.Add(&p.ev))
}

// incidents prints and counts what the correlator completed: incs, and
// the findings it holds.
func (p *Processor) incidents(incs []incident.Incident) error {
	for i := range incs {
		if p.names != nil {
			p.name(&incs[i])
		}
		if !p.sel.Incident(&incs[i]) {
			continue
		}
		p.stats.Incidents++
		p.total.Add(&incs[i])
		p.interval.Add(&incs[i])
		if err := p.out.Incident(&incs[i]); err != nil {
			return err
		}
	}
	fs := p.corr.Findings()
	for i := range fs {
		if p.names != nil {
			fs[i].Flow.Names = p.names.Names(namesKey(&fs[i].Flow))
		}
		if !p.sel.Finding(&fs[i]) {
			continue
		}
		p.stats.Findings++
		p.total.AddFinding(&fs[i])
		p.interval.AddFinding(&fs[i])
		if err := p.out.Finding(&fs[i]); err != nil {
			return err
		}
	}
	return nil
}

// name looks up both packets of an incident.
func (p *Processor) name(inc *incident.Incident) {
	inc.Loser.Names = p.names.Names(namesKey(&inc.Loser))
	if inc.HasWinner {
		inc.Winner.Names = p.names.Names(namesKey(&inc.Winner))
	}
}

// namesKey looks a packet up by netns, by sender where it is known, and by
// source address before NAT.
func namesKey(pkt *incident.Packet) names.Key {
	k := names.Key{Netns: pkt.Netns, Addr: pkt.Orig.Src}
	if pkt.Task {
		k.PID = pkt.PID
	}
	return k
}

// Idle tells the correlator that kernel time reached now while no record
// arrived, so that incidents waiting for late events are printed without
// waiting for the next record. It reports whether that did more than move
// the correlator's clock: completed an incident or finding, or forgot a
// record that aged out. An idle that did not changes nothing before the
// next record, and is superseded by the next idle.
func (p *Processor) Idle(now uint64) (acted bool, err error) {
	before := p.corr.Stats()
	err = p.incidents(p.corr.Advance(now))
	after := p.corr.Stats()
	return after.Pending != before.Pending || after.Tracked != before.Tracked, err
}

// Quiet says that no incident is in the making (incident.Correlator.Quiet).
func (p *Processor) Quiet() bool { return p.corr.Quiet() }

// Lost reports records that never arrived.
func (p *Processor) Lost(l loss.Count) error {
	if l.Count == 0 {
		return nil
	}
	p.total.AddLost(l)
	p.interval.AddLost(l)
	return p.out.Lost(l)
}

// Interval prints the summary of the interval that ends now, beside the
// growth of the kernel's counters over it (kstat.Growth), and starts the
// next one.
func (p *Processor) Interval(now time.Time, counters []kstat.NetnsCounters) error {
	err := p.out.Summary(p.interval.Summary(now, counters, false))
	p.interval.Reset(now)
	return err
}

// Finish reports what the correlator still held and prints the summary of
// the whole run, which it returns.
func (p *Processor) Finish(end time.Time, counters []kstat.NetnsCounters) (*summary.Summary, error) {
	if err := p.incidents(p.corr.Flush()); err != nil {
		return nil, err
	}
	s := p.total.Summary(end, counters, true)
	return s, p.out.Summary(s)
}
