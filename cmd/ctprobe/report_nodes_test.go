package main

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ctprobe/ctprobe/tracer/capture"
	"github.com/ctprobe/ctprobe/tracer/names"
)

// vmCapture510 was written by `ctprobe trace -w` in another VM run (e2e
// TestVMLab, scenario vxlan-masq, Debian's 5.10 cloud kernel): 24 clashes.
const vmCapture510 = "testdata/vm-5.10.ctp"

// rewrite copies the capture at src into files in dir through the capture
// package's writer, every record as it is: edit changes each file's header
// and trailer, and the records are split into files after each count in
// splits (a rotated capture: each file header to trailer, the next
// starting where the last ended).
func rewrite(t *testing.T, src, dir string, edit func(*capture.Header, *capture.Trailer), splits ...int) []string {
	t.Helper()
	return rewriteNamed(t, src, dir, edit, nil, splits...)
}

// rewriteNamed is rewrite with the names entries given first in each file,
// as a trace that named pods writes them before the records they name.
func rewriteNamed(t *testing.T, src, dir string, edit func(*capture.Header, *capture.Trailer), entries []names.Entry, splits ...int) []string {
	t.Helper()
	rd, err := capture.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var recs []capture.Record
	for {
		rec, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		rec.Raw = slices.Clone(rec.Raw)
		recs = append(recs, rec)
	}
	hdr, last := rd.Header(), *rd.Trailer()
	bounds := append(append([]int{0}, splits...), len(recs))
	var paths []string
	for i := range len(bounds) - 1 {
		h, tr := hdr, capture.Trailer{EndUnixNano: last.EndUnixNano, Counters: last.Counters}
		if i > 0 { // starts when the file before ended
			h.StartUnixNano = hdr.BootTimeUnixNano + int64(recs[bounds[i]-1].TS)
		}
		if i < len(bounds)-2 {
			tr = capture.Trailer{EndUnixNano: hdr.BootTimeUnixNano + int64(recs[bounds[i+1]-1].TS), Counters: hdr.Counters}
		}
		edit(&h, &tr)
		path := filepath.Join(dir, filepath.Base(src)+"."+string(rune('a'+i))+".ctp")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		w, err := capture.NewWriter(f, h)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) > 0 {
			if err := w.WriteNames(entries); err != nil {
				t.Fatal(err)
			}
		}
		for _, rec := range recs[bounds[i]:bounds[i+1]] {
			switch rec.Type {
			case capture.TypeSample:
				err = w.WriteRecord(rec.TS, rec.Raw)
			case capture.TypeLost:
				err = w.WriteLost(rec.CPU, rec.Count, rec.Kind)
			case capture.TypeNames:
				err = w.WriteNames(rec.Names)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(tr); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	return paths
}

// jsonReport runs report -o json on the -r arguments and decodes it.
func jsonReport(t *testing.T, args ...string) []map[string]any {
	t.Helper()
	var cmd []string
	for _, a := range args {
		cmd = append(cmd, "-r", a)
	}
	return jsonRun(t, append([]string{"report"}, cmd...)...)
}

// jsonRun runs ctprobe with args and -o json, and decodes its output.
func jsonRun(t *testing.T, args ...string) []map[string]any {
	t.Helper()
	code, stdout, stderr := runCLI(append(args, "-o", "json")...)
	if code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, stderr)
	}
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSuffix(stdout, "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		out = append(out, m)
	}
	return out
}

func ofKind(lines []map[string]any, kind string) []map[string]any {
	var out []map[string]any
	for _, m := range lines {
		if m["kind"] == kind {
			out = append(out, m)
		}
	}
	return out
}

// withoutNode is an incident line as a report of its capture alone prints
// it.
func withoutNode(m map[string]any) string {
	c := map[string]any{}
	for k, v := range m {
		if k != "node" {
			c[k] = v
		}
	}
	b, _ := json.Marshal(c)
	return string(b)
}

// twoNodes writes into dir the captures of two VM runs as two nodes':
// node-a (6.12, --timeline) and node-b (5.10), whose wall clock is moved
// so that its first incident comes 1 s after node-a's and their incidents
// interleave (the VMs shared one hostname).
func twoNodes(t *testing.T, dir string) (a, b string) {
	t.Helper()
	a = rewrite(t, vmCapture, dir, func(h *capture.Header, _ *capture.Trailer) { h.Hostname = "node-a" })[0]
	// node-b's first incident comes 1 s after node-a's.
	firstAt := func(path string) int64 {
		at, err := time.Parse(time.RFC3339Nano, ofKind(jsonReport(t, path), "incident")[0]["time"].(string))
		if err != nil {
			t.Fatal(err)
		}
		return at.UnixNano()
	}
	shift := firstAt(vmCapture) + 1e9 - firstAt(vmCapture510)
	b = rewrite(t, vmCapture510, dir, func(h *capture.Header, tr *capture.Trailer) {
		h.Hostname, h.BootTimeUnixNano, h.StartUnixNano, tr.EndUnixNano = "node-b", h.BootTimeUnixNano+shift, h.StartUnixNano+shift, tr.EndUnixNano+shift
	})[0]
	return a, b
}

// Captures of two VM runs, named node-a and node-b (the VMs share one
// hostname; node-b's wall clock is moved so that its trace ran during
// node-a's and their incidents interleave), report as one: every incident of each, each tagged
// with its node and as its own report prints it, in time order, a header
// per node, and a summary with a row and completeness per node.
func TestReportNodes(t *testing.T) {
	inUTC(t)
	dir := t.TempDir()
	a, b := twoNodes(t, dir)

	alone := map[string][]map[string]any{"node-a": ofKind(jsonReport(t, a), "incident"), "node-b": ofKind(jsonReport(t, b), "incident")}
	if len(alone["node-a"]) != 22 || len(alone["node-b"]) != 24 {
		t.Fatalf("alone: %d and %d incidents, want 22 and 24", len(alone["node-a"]), len(alone["node-b"]))
	}
	merged := jsonReport(t, filepath.Join(dir, "*.ctp"))
	kernels := map[any]any{}
	for _, h := range ofKind(merged, "header") {
		kernels[h["node"]] = h["kernel"]
	}
	if len(kernels) != 2 || kernels["node-a"] != "6.12.118+deb12-cloud-amd64" || kernels["node-b"] != "5.10.0-32-cloud-amd64" {
		t.Errorf("headers: kernels by node %v", kernels)
	}
	incs := ofKind(merged, "incident")
	got := map[string][]string{}
	var last time.Time
	for _, m := range incs {
		node, _ := m["node"].(string)
		got[node] = append(got[node], withoutNode(m))
		at, _ := time.Parse(time.RFC3339Nano, m["time"].(string))
		if at.Before(last) {
			t.Errorf("%s incident at %v after one at %v", node, at, last)
		}
		last = at
	}
	for node, want := range alone {
		var w []string
		for _, m := range want {
			w = append(w, withoutNode(m))
		}
		if !slices.Equal(got[node], w) {
			t.Errorf("%s: %d incidents merged, %d alone, or not the same", node, len(got[node]), len(w))
		}
	}
	if len(incs) != 46 || len(got) != 2 {
		t.Errorf("%d incidents of %d nodes, want 46 of 2", len(incs), len(got))
	}
	// Interleaved: node-b's first incident comes before node-a's last.
	first, lastA := slices.IndexFunc(incs, func(m map[string]any) bool { return m["node"] == "node-b" }), -1
	for i, m := range incs {
		if m["node"] == "node-a" {
			lastA = i
		}
	}
	if first < 0 || first > lastA {
		t.Errorf("node-b's first incident is line %d, node-a's last %d: not interleaved", first, lastA)
	}

	sums := ofKind(merged, "summary")
	if len(sums) != 1 {
		t.Fatalf("%d summaries", len(sums))
	}
	s := sums[0]
	if s["incidents"] != 46.0 {
		t.Errorf("summary incidents %v", s["incidents"])
	}
	nodes, _ := s["nodes"].([]any)
	if len(nodes) != 2 {
		t.Fatalf("summary nodes %v", s["nodes"])
	}
	for i, want := range []struct {
		node      string
		incidents float64
	}{{"node-a", 22}, {"node-b", 24}} {
		n := nodes[i].(map[string]any)
		cr := n["completeness"].(map[string]any)["clash_resolve"].(map[string]any)
		if n["node"] != want.node || n["incidents"] != want.incidents || cr["explained"] != want.incidents || cr["counted"] != want.incidents {
			t.Errorf("node row %v, want %s with %v incidents, all counted by its kernel", n, want.node, want.incidents)
		}
	}
	for _, ns := range s["netns"].([]any) {
		if node := ns.(map[string]any)["node"]; node != "node-a" && node != "node-b" {
			t.Errorf("netns row without its node: %v", ns)
		}
	}

	// The text report names the node on every incident.
	code, text, stderr := runCLI("report", "-r", a, "-r", b, "--no-color")
	if code != 0 {
		t.Fatalf("text: exit %d: %s", code, stderr)
	}
	for node, n := range map[string]int{"node-a": 22, "node-b": 24} {
		if got := regexp.MustCompile(`(?m)^\[`+node+`\] \d\d:\d\d:\d\d\.\d{6} race `).FindAllString(text, -1); len(got) != n {
			t.Errorf("%d incidents of %s in the text report, want %d", len(got), node, n)
		}
	}
	if !strings.Contains(text, "by node\n  node-a  22 incidents") {
		t.Errorf("text report's summary:\n%s", text[strings.Index(text, "=== ctprobe summary"):])
	}
}

// The same hostname on two boots is two nodes, named with their boot.
func TestReportNodesSameHostname(t *testing.T) {
	inUTC(t)
	if readHeader(t, vmCapture).Hostname != readHeader(t, vmCapture510).Hostname {
		t.Skip("the two VM captures no longer share a hostname")
	}
	merged := jsonReport(t, vmCapture, vmCapture510)
	nodes := map[string]int{}
	for _, m := range ofKind(merged, "incident") {
		nodes[m["node"].(string)]++
	}
	if len(nodes) != 2 || nodes["ctprobe-vm@2026-12-02T11:33:59Z"] != 22 || nodes["ctprobe-vm@2026-12-02T10:22:38Z"] != 24 {
		t.Errorf("incidents by node %v", nodes)
	}
}

// A rotated capture's files read as one trace: the same incidents and
// summary as the capture they were cut from, no node named.
func TestReportRotatedFiles(t *testing.T) {
	inUTC(t)
	files := rewrite(t, vmCapture, t.TempDir(), func(*capture.Header, *capture.Trailer) {}, 60, 130)
	whole, rotated := jsonReport(t, vmCapture), jsonReport(t, files[2], files[0], files[1])
	for _, kind := range []string{"header", "plan", "incident", "summary"} {
		w, r := ofKind(whole, kind), ofKind(rotated, kind)
		wb, _ := json.Marshal(w)
		rb, _ := json.Marshal(r)
		if string(wb) != string(rb) {
			t.Errorf("%s lines differ: whole %d, rotated %d", kind, len(w), len(r))
		}
	}
}

func readHeader(t *testing.T, path string) capture.Header {
	t.Helper()
	rd, err := capture.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	return rd.Header()
}

// One node's capture cut short: both nodes are reported, the summary
// too, then the one error, with the exit status of a truncated capture.
func TestReportNodesTruncated(t *testing.T) {
	dir := t.TempDir()
	a := rewrite(t, vmCapture, dir, func(h *capture.Header, _ *capture.Trailer) { h.Hostname = "node-a" })[0]
	b := rewrite(t, vmCapture510, dir, func(h *capture.Header, _ *capture.Trailer) { h.Hostname = "node-b" })[0]
	data, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, data[:len(data)-40], 0o600); err != nil { // into the trailer
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI("report", "-r", a, "-r", b, "-o", "json")
	if code != exitTruncated {
		t.Fatalf("exit %d, want %d: %s", code, exitTruncated, stderr)
	}
	oneLine(t, stderr)
	if !strings.Contains(stderr, b) || !strings.Contains(stderr, "capture truncated") {
		t.Errorf("stderr %q", stderr)
	}
	lines := reported(t, stdout)
	if kinds(lines, "incident") != 46 || kinds(lines, "summary") != 1 || !strings.Contains(lines[len(lines)-1], `"incidents":46`) {
		t.Errorf("%d incidents, %d summaries:\n%s", kinds(lines, "incident"), kinds(lines, "summary"), lines[len(lines)-1])
	}
}
