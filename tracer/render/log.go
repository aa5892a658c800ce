package render

import (
	"log/slog"
	"strings"

	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/loss"
	"github.com/ctprobe/ctprobe/tracer/plan"
	"github.com/ctprobe/ctprobe/tracer/summary"
)

// Log writes what an operator of a quiet trace (an agent: trace -q with
// metrics and a capture) must hear of as structured log records: the
// attached points, warnings, losses and summaries. Incidents and events
// go to the metrics and the capture, not to the log.
type Log struct{ L *slog.Logger }

func (l Log) Plan(p []plan.Entry) error {
	var points []string
	for _, e := range p {
		if e.Status == plan.Attached {
			points = append(points, Escape(e.Point+"="+e.Function+"/"+string(e.Attach)))
		}
	}
	l.L.Info("probes attached", "points", strings.Join(points, " "))
	return nil
}

// Header logs which ctprobe traces which kernel, in which mode.
func (l Log) Header(h *Header) error {
	l.L.Info("trace started", "version", Escape(h.Version), "kernel", Escape(h.Kernel), "hostname", Escape(h.Hostname), "mode", Escape(h.Mode))
	return nil
}

// Warning logs msg escaped (appendEscaped): slog's JSON handler leaves
// DEL and C1 controls raw, and a log on stderr may be a terminal.
func (l Log) Warning(msg string) error {
	l.L.Warn(Escape(msg))
	return nil
}

func (l Log) Lost(c loss.Count) error {
	attrs := []any{"kind", Escape(string(c.Kind)), "count", c.Count, "meaning", Escape(c.Kind.Meaning())}
	if c.CPU >= 0 {
		attrs = append(attrs, "cpu", c.CPU)
	}
	if c.Where != "" {
		attrs = append(attrs, "where", c.Where)
	}
	l.L.Warn("records lost", attrs...)
	return nil
}

func (l Log) Summary(s *summary.Summary) error {
	l.L.Info("summary", "final", s.Final, "start", s.Start, "end", s.End, "incidents", s.Incidents, "lost", s.LostTotal())
	return nil
}

func (Log) Event(*event.Event) error          { return nil }
func (Log) Incident(*incident.Incident) error { return nil }
func (Log) Finding(*incident.Finding) error   { return nil }
func (Log) Probes(*Probes) error              { return nil }
func (Log) Flush() error                      { return nil }
