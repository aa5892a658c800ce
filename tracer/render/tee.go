package render

import (
	"errors"

	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/loss"
	"github.com/ctprobe/ctprobe/tracer/plan"
	"github.com/ctprobe/ctprobe/tracer/summary"
)

// Tee hands everything to each of its renderers in turn: a trace's text or
// JSON output, its metrics and its log see the same plan, incidents,
// losses and summaries. Every renderer gets every call, even after another
// one failed; the errors are joined.
type Tee []Renderer

func (t Tee) each(f func(Renderer) error) error {
	var errs []error
	for _, r := range t {
		if err := f(r); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (t Tee) Header(h *Header) error { return t.each(func(r Renderer) error { return r.Header(h) }) }

func (t Tee) Event(ev *event.Event) error {
	return t.each(func(r Renderer) error { return r.Event(ev) })
}

func (t Tee) Incident(inc *incident.Incident) error {
	return t.each(func(r Renderer) error { return r.Incident(inc) })
}

func (t Tee) Finding(f *incident.Finding) error {
	return t.each(func(r Renderer) error { return r.Finding(f) })
}

func (t Tee) Lost(l loss.Count) error { return t.each(func(r Renderer) error { return r.Lost(l) }) }

func (t Tee) Summary(s *summary.Summary) error {
	return t.each(func(r Renderer) error { return r.Summary(s) })
}

func (t Tee) Plan(p []plan.Entry) error { return t.each(func(r Renderer) error { return r.Plan(p) }) }

func (t Tee) Probes(p *Probes) error { return t.each(func(r Renderer) error { return r.Probes(p) }) }

func (t Tee) Warning(msg string) error {
	return t.each(func(r Renderer) error { return r.Warning(msg) })
}

func (t Tee) Flush() error { return t.each(Renderer.Flush) }
