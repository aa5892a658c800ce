package render

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/loss"
	"github.com/ctprobe/ctprobe/tracer/names"
	"github.com/ctprobe/ctprobe/tracer/summary"
)

func incidentLine(t *testing.T, inc *incident.Incident) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	if err := NewJSON(&buf, testOptions(false)).Incident(inc); err != nil {
		t.Fatal(err)
	}
	return decodeLines(t, buf.Bytes())[0]
}

// Two packets that entered conntrack in the same nanosecond (on two CPUs)
// have a window of 0, not an unknown one; a packet whose entry was not
// seen leaves it unknown.
func TestJSONZeroWindow(t *testing.T) {
	inc := testIncidents()[2] // race 3, both births seen
	inc.Winner.Born = inc.Loser.Born
	inc.Window = 0
	if got := incidentLine(t, &inc)["window_us"]; got != json.Number("0") {
		t.Errorf("window_us %v, want 0", got)
	}
	var text bytes.Buffer
	if err := NewText(&text, testOptions(false)).Incident(&inc); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "window 0.000µs between the two packets entering conntrack\n") {
		t.Errorf("text:\n%s", text.String())
	}
	inc.Winner.Born = 0
	if got := incidentLine(t, &inc)["window_us"]; got != nil {
		t.Errorf("window_us %v with the winner's entry unseen, want null", got)
	}
}

// Every stage of a timeline carries the keys of its kind, with null for a
// tuple that is unknown, and no other kind's.
func TestJSONStageKeys(t *testing.T) {
	inc := testIncidents()[2]
	tl := inc.Loser.Timeline
	for i := range tl {
		tl[i].Before, tl[i].After = event.Tuple{}, event.Tuple{}
	}
	wantKeys := map[string][]string{
		"ct_in":   {"hook", "orig", "reply"},
		"nat":     {"manip", "changed", "before", "after"},
		"clash":   {"winner_orig", "winner_reply"},
		"confirm": {"orig", "reply", "verdict"},
	}
	seen := map[string]bool{}
	for _, s := range incidentLine(t, &inc)["loser"].(map[string]any)["timeline"].([]any) {
		st := s.(map[string]any)
		stage := st["stage"].(string)
		seen[stage] = true
		want := append([]string{"stage", "offset_us", "ktime_ns", "cpu"}, wantKeys[stage]...)
		if got := slices.Sorted(maps.Keys(st)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
			t.Errorf("%s: keys %v, want %v", stage, got, want)
		}
		for _, k := range []string{"orig", "reply", "before", "after", "winner_orig", "winner_reply"} {
			if v, ok := st[k]; ok && v != nil {
				t.Errorf("%s: unknown %s is %v, want null", stage, k, v)
			}
		}
	}
	if len(seen) != len(wantKeys) {
		t.Errorf("stages %v: the fixture no longer has every kind", seen)
	}
}

func probesJSON(p *Probes) []byte {
	var buf bytes.Buffer
	if err := NewJSON(&buf, testOptions(false)).Probes(p); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

var testProbes = Probes{
	Kernel: "6.12.48+deb13-amd64", BTF: true, Kprobes: true, Conntrack: true, Fentry: "yes", ClashEra: "6.12+", Plan: testPlan,
	Functions: []KernelFunction{{Name: "nf_conntrack_in", Names: []string{"nf_conntrack_in"}, Module: "nf_conntrack", Params: 2}, {Name: "nf_nat_setup_info", Params: -1}},
	Datapath:  []string{"cilium: kube-proxy replacement"},
	Names:     names.Status{Source: names.SourceNode, Reason: "no container runtime answered"},
}

// probes -o json: schema and kind like every line, error null when a
// trace would start, every key present.
func TestJSONProbes(t *testing.T) {
	ok := decodeLines(t, probesJSON(&testProbes))[0]
	if ok["kind"] != "probes" || ok["traceable"] != true || ok["error"] != nil {
		t.Errorf("traceable probes: %v", ok)
	}
	if _, present := ok["error"]; !present {
		t.Error("error left out, want null")
	}
	for _, f := range want(t, "probes", ok, "functions", tArray).([]any) {
		f := f.(map[string]any)
		want(t, "function", f, "name", tString)
		want(t, "function", f, "kallsyms", tArray, tNull)
		want(t, "function", f, "module", tString)
		want(t, "function", f, "btf_params", tInt)
	}
	n := want(t, "probes", ok, "names", tObject).(map[string]any)
	for _, k := range []string{"source", "runtime", "reason"} {
		want(t, "names", n, k, tString)
	}
	for _, k := range []string{"pods", "netns"} {
		want(t, "names", n, k, tInt)
	}
	want(t, "names", n, "truncated", tBool)

	broken := testProbes
	broken.Error, broken.Functions, broken.Datapath = "no BTF", nil, nil
	bad := decodeLines(t, probesJSON(&broken))[0]
	if bad["traceable"] != false || bad["error"] != "no BTF" {
		t.Errorf("untraceable probes: %v", bad)
	}
	for _, k := range []string{"functions", "datapath"} {
		if a, isArray := bad[k].([]any); !isArray || len(a) != 0 {
			t.Errorf("%s %v, want []", k, bad[k])
		}
	}
}

// nodesOut is a report of several nodes in format: node-a's lines, then
// the summary of node-a and node-b.
func nodesOut(format string) []byte {
	var buf bytes.Buffer
	opt := testOptions(false)
	opt.Node = "node-a"
	r, _ := New(&buf, format, opt)
	inc, ev, f := testIncidents()[2], testEvents()[0], testFindings()[0]
	err := errors.Join(r.Header(&testHeader), r.Plan(testPlan), r.Event(&ev), r.Incident(&inc), r.Finding(&f),
		r.Lost(loss.Count{Kind: loss.Ringbuf, CPU: 1, Count: 12}), r.Warning("w"))
	sum, _ := New(&buf, format, testOptions(false))
	nodes := []summary.NodeSummary{{Node: "node-a", Summary: testSummary()}, {Node: "node-b", Summary: testSummary()}}
	if err = errors.Join(err, sum.Summary(summary.Merge(nodes))); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// In a report of several nodes every line names its node, and the summary
// has a row per node and the node of each namespace row.
func TestNodes(t *testing.T) {
	lines := decodeLines(t, nodesOut("json"))
	for _, m := range lines[:len(lines)-1] {
		if m["node"] != "node-a" {
			t.Errorf("%s line without its node: %v", m["kind"], m)
		}
	}
	s := lines[len(lines)-1]
	if s["incidents"] != json.Number("16") || s["node"] != nil {
		t.Errorf("summary of two nodes of 8 incidents: %v", s)
	}
	for i, n := range want(t, "summary", s, "nodes", tArray).([]any) {
		n := n.(map[string]any)
		if n["node"] != []string{"node-a", "node-b"}[i] || n["incidents"] != json.Number("8") || n["resolved"] != json.Number("4") || n["dropped"] != json.Number("3") {
			t.Errorf("node row %v", n)
		}
		wantTime(t, "node row", n, "start")
		wantTime(t, "node row", n, "end")
		want(t, "node row", n, "lost", tInt)
		want(t, "node row", n, "completeness", tObject)
	}
	for _, rows := range []string{"netns", "by_process", "findings"} {
		for _, row := range s[rows].([]any) {
			if node := row.(map[string]any)["node"]; node != "node-a" && node != "node-b" {
				t.Errorf("%s row %v", rows, row)
			}
		}
	}
	text := string(nodesOut("text"))
	for _, want := range []string{"[node-a] attach plan\n", "[node-a] 12:00:03.123477 race 3 ", "[node-a] 12:00:10.000000 lost 12", "[node-a] 12:00:03.123496 finding tunnel-double-snat", "[node-a] 12:00:10.000000 warning: w\n",
		"by node\n  node-a  8 incidents (4 settled, 3 dropped), lost 1, 10s\n", "  [node-b] netns 4026532201 (ctlab)", "  [node-a] total ", "  [node-a] ctlab[4242]  6\n", "  [node-b] tunnel-double-snat  netns 4026532201  1 "} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in\n%s", want, text)
		}
	}
}
