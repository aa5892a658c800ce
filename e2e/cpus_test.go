package e2e

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ctprobe/ctprobe/lab"
)

// On more CPUs than the lab's two, with the history map shrunk to 256 slots,
// --timeline keeps the histories of racing flows while new flows pass on
// every CPU: nothing is lost, and every clash the kernel counted is an
// incident (e2e/guest-cpus.sh).
func TestVMManyCPUs(t *testing.T) {
	// A VM of its own with four emulated vCPUs: make e2e-cpus runs this on
	// Debian 11's 5.10, whose LRU lists (the kprobe pairs' maps) keep the
	// fixed batch of 128 per CPU (later stable kernels cap it).
	if os.Getenv("E2E_MANY_CPUS") == "" {
		t.Skip("runs with E2E_MANY_CPUS=1 (make e2e-cpus)")
	}
	out := bootGuest(t, "e2e/guest-cpus.sh", "cpus", "--smp", "4", "--env", "HISTORY=256")
	p := func(name string) string { return filepath.Join(out, name) }
	if rc := readFile(t, p("cpus.lab.rc")); rc != "0" {
		t.Fatalf("ctlab exit %s: %s", rc, readFile(t, p("cpus.lab.err")))
	}
	if rc := readFile(t, p("cpus.trace.rc")); rc != "0" {
		t.Fatalf("ctprobe trace exit %s: %s", rc, readFile(t, p("cpus.trace.err")))
	}
	var stats lab.Stats
	readJSON(t, p("cpus.lab.json"), &stats)
	labNetns := map[float64]bool{}
	for _, ns := range stats.Netns {
		labNetns[float64(ns.Inode)] = true
	}
	raw, lines := jsonLines(t, p("cpus.trace.jsonl"))
	incidents := 0
	for i, m := range lines {
		switch {
		case m["kind"] == "lost":
			t.Errorf("lost records: %s", raw[i])
		case m["kind"] == "incident" && labNetns[m["netns"].(float64)]:
			incidents++
		}
	}
	var clashes uint64
	for _, ns := range stats.Netns {
		clashes += ns.Delta.Clashes()
	}
	t.Logf("%d lookups, %d incidents, kernel clashes %d", stats.Lookups, incidents, clashes)
	if clashes == 0 {
		t.Fatal("no clash: nothing was proven")
	}
	if uint64(incidents) != clashes {
		t.Errorf("%d incidents, the kernel counted %d clashes", incidents, clashes)
	}
}
