package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ctprobe/ctprobe/lab"
	"github.com/ctprobe/ctprobe/tracer/render/rendertest"
)

// TestVMHostileNames traces, live, races of lookups sent by threads that
// named themselves with escape sequences (e2e/guest-hostile.sh): the text
// output, live and from the capture, holds no control byte but shows the
// name escaped; the JSON output carries the exact name. The tracers run
// with what they keep after attaching, and still read every netns's
// counters: each of the lab's equals the lab's own count. One boot, on the
// default kernel only.
func TestVMHostileNames(t *testing.T) {
	if series := os.Getenv("KERNEL_SERIES"); series != "" {
		t.Skipf("runs on the default kernel only, not %s", series)
	}
	const name = "\x1b]0;pwned\a\x1b[2J"
	const escaped = `\x1b]0;pwned\x07\x1b[2J`
	out := bootGuest(t, "e2e/guest-hostile.sh", "hostile")
	p := func(f string) string { return filepath.Join(out, "hostile."+f) }
	for _, f := range []string{"lab", "trace", "trace.jsonl", "report"} {
		if rc := readFile(t, p(f+".rc")); rc != "0" {
			t.Fatalf("%s exit %s: %s", f, rc, readFile(t, p(strings.TrimSuffix(f, ".rc")+".err")))
		}
	}
	var stats lab.Stats
	readJSON(t, p("lab.json"), &stats)
	clashes := uint64(0)
	for _, ns := range stats.Netns {
		clashes += ns.Delta.Clashes()
	}
	if clashes == 0 {
		t.Fatalf("no clash in %d lookups: nothing was printed to check", stats.Lookups)
	}

	for _, f := range []string{"trace.txt", "report.txt"} {
		text, err := os.ReadFile(p(f))
		if err != nil {
			t.Fatal(err)
		}
		if c := rendertest.FirstControl(text); c != "" {
			t.Errorf("%s: %s", f, c)
		}
		if !strings.Contains(string(text), " — pid ") || !strings.Contains(string(text), escaped) {
			t.Errorf("%s shows no incident naming the sender %s:\n%s", f, escaped, text)
		}
	}

	raw, lines := jsonLines(t, p("trace.jsonl"))
	named := 0
	for i, l := range lines {
		switch l["kind"] {
		case "incident":
			if loser := l["loser"].(map[string]any); loser["task"] == true {
				if loser["comm"] != name {
					t.Errorf("incident's sender is %q, want %q: %s", loser["comm"], name, raw[i])
				}
				named++
			}
		case "summary":
			checkCountersRead(t, l, &stats)
		case "warning":
			t.Errorf("ctprobe warned: %s", raw[i])
		}
	}
	if named == 0 {
		t.Error("no incident named its sender")
	}
	checkCaps(t, readFile(t, p("caps")), readFile(t, p("release")), readFile(t, p("unpriv_bpf_disabled")))
}

// checkCountersRead: the final summary holds, for each of the lab's
// namespaces (which no process is in, so ctprobe joins each to read it,
// after dropping its capabilities), the kernel's clash counts the lab
// measured itself.
func checkCountersRead(t *testing.T, summary map[string]any, stats *lab.Stats) {
	t.Helper()
	if summary["final"] != true {
		return
	}
	read := map[uint64]map[string]any{}
	for _, n := range summary["netns"].([]any) {
		n := n.(map[string]any)
		if c, ok := n["counters"].(map[string]any); ok {
			read[uint64(n["netns"].(float64))] = c
		}
	}
	for _, ns := range stats.Netns {
		if ns.Delta.Clashes() == 0 {
			continue
		}
		c, ok := read[ns.Inode]
		if !ok {
			t.Errorf("netns %s (%d): its counters were not read", ns.Name, ns.Inode)
			continue
		}
		if got, want := fmt.Sprint(c["clash_resolve"], "/", c["insert_failed"]), fmt.Sprint(float64(ns.Delta.ClashResolve), "/", float64(ns.Delta.InsertFailed)); got != want {
			t.Errorf("netns %s (%d): ctprobe read clash_resolve/insert_failed %s, the lab %s", ns.Name, ns.Inode, got, want)
		}
	}
}

// checkCaps: every thread of a tracer that attached holds what README and
// docs/kernel-notes.md (Capabilities after attach) say: nothing effective
// but CAP_BPF where the kernel needs it to read the tracer's maps, and
// CAP_SYS_PTRACE and CAP_SYS_ADMIN permitted for the counters; the bounding
// set no more, and no_new_privs.
func checkCaps(t *testing.T, caps, release, unprivDisabled string) {
	t.Helper()
	const bpf, counters = uint64(1) << 39, uint64(1)<<19 | uint64(1)<<21 // CAP_BPF; CAP_SYS_PTRACE, CAP_SYS_ADMIN
	effective := uint64(0)
	var major, minor int
	fmt.Sscanf(release, "%d.%d", &major, &minor)
	if (major < 5 || major == 5 && minor < 19) && unprivDisabled != "0" {
		effective = bpf
	}
	want := fmt.Sprintf("CapPrm:\t%016x CapEff:\t%016x CapBnd:\t%016x NoNewPrivs:\t1", effective|counters, effective, effective|counters)
	threads := strings.Split(strings.TrimSpace(caps), "\n")
	for _, th := range threads {
		if strings.TrimSpace(th) != want {
			t.Errorf("a thread holds %q, want %q", th, want)
		}
	}
	if len(threads) < 2 {
		t.Errorf("%d threads read: %q", len(threads), caps)
	}
}
