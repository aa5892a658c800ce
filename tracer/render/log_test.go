package render

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/ctprobe/ctprobe/tracer/loss"
	"github.com/ctprobe/ctprobe/tracer/plan"
	"github.com/ctprobe/ctprobe/tracer/summary"
)

// A quiet trace's log has one JSON record for the plan, each warning, each
// loss and each summary, with their numbers as fields.
func TestLog(t *testing.T) {
	var buf bytes.Buffer
	l := Log{L: slog.New(slog.NewJSONHandler(&buf, nil))}
	l.Plan([]plan.Entry{
		{Point: "clash", Function: "nf_ct_resolve_clash", Attach: plan.Fentry, Status: plan.Attached},
		{Point: "nat", Function: "get_unique_tuple", Status: plan.Unused},
	})
	l.Warning("ring buffer accounting: 3 unaccounted")
	l.Lost(loss.Count{Kind: loss.Ringbuf, CPU: 1, Count: 7})
	l.Summary(&summary.Summary{Final: true, Incidents: 12, Lost: map[loss.Kind]uint64{loss.Ringbuf: 7, loss.NoEntry: 1}})
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		recs = append(recs, m)
	}
	want := []map[string]any{
		{"level": "INFO", "msg": "probes attached", "points": "clash=nf_ct_resolve_clash/fentry"},
		{"level": "WARN", "msg": "ring buffer accounting: 3 unaccounted"},
		{"level": "WARN", "msg": "records lost", "kind": "ringbuf", "count": 7.0, "cpu": 1.0, "meaning": loss.Ringbuf.Meaning()},
		{"level": "INFO", "msg": "summary", "final": true, "incidents": 12.0, "lost": 8.0},
	}
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d:\n%s", len(recs), len(want), buf.String())
	}
	for i, w := range want {
		for k, v := range w {
			if recs[i][k] != v {
				t.Errorf("record %d: %s = %v, want %v", i, k, recs[i][k], v)
			}
		}
	}
}
