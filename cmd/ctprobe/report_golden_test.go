package main

import (
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ctprobe/ctprobe/tracer/render"
)

var update = flag.Bool("update", false, "rewrite the golden reports in testdata/ from the current output (review the diff before committing)")

// vmCapture was written by `ctprobe trace --timeline -w` in a VM (e2e
// TestVMLab, scenario vxlan-masq, Debian's 6.12 cloud kernel): 22 race 2
// and 3 clashes, each counted by the kernel in clash_resolve.
const vmCapture = "testdata/vm-6.12-timeline.ctp"

// inUTC prints times in UTC, as the golden reports were written.
func inUTC(t *testing.T) {
	local := time.Local
	time.Local = time.UTC
	t.Cleanup(func() { time.Local = local })
}

// golden compares got with the file at path, or rewrites it with -update.
func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (write it with: go test ./cmd/ctprobe -run %s -update)", err, t.Name())
	}
	w, g := strings.Split(string(want), "\n"), strings.Split(got, "\n")
	for i := range min(len(w), len(g)) {
		if w[i] != g[i] {
			t.Fatalf("%s differs at line %d (run with -update if the change is intended):\nwant: %q\ngot:  %q", path, i+1, w[i], g[i])
		}
	}
	if len(w) != len(g) {
		t.Fatalf("%s has %d lines, the report %d", path, len(w), len(g))
	}
}

// A capture this version of ctprobe wrote in a real VM run is reported as
// it was when it was committed, in text and in JSON; the JSON is the
// current schema on every line, starts with the capture's header, and
// explains every clash the kernel counted.
func TestReportVMCapture(t *testing.T) {
	inUTC(t)
	code, text, stderr := runCLI("report", "-r", vmCapture, "--no-color")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	golden(t, "testdata/vm-6.12-timeline.txt", text)

	code, out, stderr := runCLI("report", "-r", vmCapture, "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	golden(t, "testdata/vm-6.12-timeline.jsonl", out)

	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	var header, sum map[string]any
	incidents := 0
	for i, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if m["schema"] != float64(render.SchemaVersion) {
			t.Errorf("line %d: schema %v", i+1, m["schema"])
		}
		switch m["kind"] {
		case "header":
			if i != 0 {
				t.Errorf("header on line %d", i+1)
			}
			header = m
		case "incident":
			incidents++
		case "summary":
			sum = m
		}
	}
	if header == nil || header["kernel"] != "6.12.118+deb12-cloud-amd64" || header["mode"] != "timeline" || header["capture"] != true {
		t.Errorf("header %v", header)
	}
	if sum == nil {
		t.Fatal("no summary")
	}
	cr := sum["total"].(map[string]any)["completeness"].(map[string]any)["clash_resolve"].(map[string]any)
	if incidents != 22 || cr["explained"] != float64(incidents) || cr["counted"] != float64(incidents) {
		t.Errorf("%d incidents, clash_resolve %v: want 22, all counted by the kernel", incidents, cr)
	}
}
