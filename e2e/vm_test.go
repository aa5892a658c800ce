// Package e2e proves ctprobe on a real distribution kernel: it boots a stock
// Debian kernel under QEMU, provokes races with ctlab while `ctprobe trace`
// runs, and checks what ctprobe reports against the kernel's own counters.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ctprobe/ctprobe/lab"
)

// scenarios and how many lookups each gets (about 30 lookups/s under TCG).
var scenarios = []struct {
	name    string
	lookups int
}{
	{"endpoints-1", 150},
	{"endpoints-2", 150},
	{"nonat", 100},
	{"ipv6", 100},
	{"local", 100},
	{"snat-one-port", 20},
	{"vxlan-masq", 60},
	// The same race, with every point on kprobe/kretprobe instead of fentry.
	{"endpoints-2@kprobe", 150},
	// kretprobes with one instance: calls on both CPUs at once are missed.
	// Nothing may be lost silently: either the incidents match the kernel's
	// counters, or the misses are reported.
	{"endpoints-2@kprobe1", 100},
	// No clash probe (as where nf_ct_resolve_clash is inlined, 4.19-5.5): the
	// kernel side finds each winner by tuple, in both directions.
	{"endpoints-2@noclash", 100},
	{"snat-one-port@noclash", 20},
}

// files is the prefix of a scenario's result files in the guest's /out.
func files(name string) string { return strings.ReplaceAll(name, "@", "-") }

func repoRoot(t *testing.T) string {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out.String()
}

// kernelDir skips the test unless VM tests are asked for, and fetches the
// kernel of FLAVOUR (cloud by default; KERNEL_SERIES picks a series).
func kernelDir(t *testing.T, root string) (kdir, flavour string) {
	if os.Getenv("CTPROBE_E2E") == "" {
		t.Skip("boots a VM: run with CTPROBE_E2E=1 (make e2e)")
	}
	flavour = os.Getenv("FLAVOUR")
	if flavour == "" {
		flavour = "cloud"
	}
	lines := strings.Split(strings.TrimSpace(run(t, root, nil, "scripts/vm/fetch-kernel.sh", flavour)), "\n")
	return lines[len(lines)-1], flavour
}

// bootLab boots the VM once for all scenarios (e2e/guest.sh) and returns
// the directory holding what the guest wrote.
func bootLab(t *testing.T) string {
	var args []string
	var names []string
	for _, s := range scenarios {
		names = append(names, s.name)
		args = append(args, "--env", "LOOKUPS_"+strings.ReplaceAll(files(s.name), "-", "_")+"="+strconv.Itoa(s.lookups))
	}
	args = append(args, "--env", "SCENARIOS="+strings.Join(names, ","))
	return bootGuest(t, "e2e/guest.sh", "", args...)
}

// bootGuest builds static binaries and an initramfs running script, boots
// the VM (run.sh's extra args) and returns the directory holding what the
// guest wrote: out/e2e-FLAVOUR[-SERIES][-suffix].
func bootGuest(t *testing.T, script, suffix string, extra ...string) string {
	root := repoRoot(t)
	kdir, flavour := kernelDir(t, root)
	tmp := t.TempDir()
	static := []string{"CGO_ENABLED=0"}
	run(t, root, static, "go", "build", "-o", filepath.Join(tmp, "ctprobe"), "./cmd/ctprobe")
	run(t, root, static, "go", "build", "-o", filepath.Join(tmp, "ctlab"), "./cmd/ctlab")
	initrd := filepath.Join(tmp, "initrd.cpio.gz")
	run(t, root, nil, "scripts/vm/build-initramfs.sh", "--kernel-dir", kdir, "--out", initrd,
		"--add", filepath.Join(tmp, "ctprobe")+":/bin/ctprobe", "--add", filepath.Join(tmp, "ctlab")+":/bin/ctlab",
		"--run", script)
	name := "e2e-" + flavour
	if series := os.Getenv("KERNEL_SERIES"); series != "" {
		name += "-" + series
	}
	if suffix != "" {
		name += "-" + suffix
	}
	out := filepath.Join(root, "out", name)
	args := append([]string{"--kernel-dir", kdir, "--initrd", initrd, "--out", out, "--timeout", "1500"}, extra...)
	cmd := exec.Command("scripts/vm/run.sh", args...)
	cmd.Dir = root
	cmd.Stdout = os.Stdout // the guest's console, live
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("VM run failed: %v (serial log: %s)", err, filepath.Join(out, "serial.log"))
	}
	t.Logf("guest output in %s", out)
	return out
}

// A guest kernel that panics before /init ran is booted again, twice at
// most (TCG can fault in the kernel's own boot-time code patching), and
// then reported as a panic. An initramfs that is not one makes every boot
// panic there ("Unable to mount root fs").
func TestVMBootPanicRetried(t *testing.T) {
	root := repoRoot(t)
	kdir, _ := kernelDir(t, root)
	tmp := t.TempDir()
	initrd := filepath.Join(tmp, "not-an-initramfs")
	if err := os.WriteFile(initrd, bytes.Repeat([]byte("ctprobe"), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, "out")
	cmd := exec.Command("scripts/vm/run.sh", "--kernel-dir", kdir, "--initrd", initrd, "--out", out, "--timeout", "120")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 125 {
		t.Fatalf("run.sh: %v; want exit code 125\n%s", err, stderr.String())
	}
	if n := strings.Count(stderr.String(), "booting again"); n != 2 {
		t.Errorf("%d retries announced, want 2:\n%s", n, stderr.String())
	}
	if !strings.Contains(stderr.String(), "guest kernel panicked") {
		t.Errorf("the last boot's panic is not reported:\n%s", stderr.String())
	}
	for _, f := range []string{"serial.boot-1.log", "serial.boot-2.log", "serial.log"} {
		if b, err := os.ReadFile(filepath.Join(out, f)); err != nil || !bytes.Contains(b, []byte("Kernel panic")) {
			t.Errorf("%s: %v; want a console with the panic", f, err)
		}
	}
}

func TestVMLab(t *testing.T) {
	// E2E_SCENARIOS=a,b runs only those (for development; CI runs all).
	if only := os.Getenv("E2E_SCENARIOS"); only != "" {
		want := strings.Split(only, ",")
		scenarios = slices.DeleteFunc(scenarios, func(s struct {
			name    string
			lookups int
		}) bool {
			return !slices.Contains(want, s.name)
		})
	}
	out := bootLab(t)
	var k guestKernel
	if !t.Run("probes", func(t *testing.T) { k = checkProbes(t, out) }) && k.release == "" {
		t.Fatal("the guest's kernel is unknown: nothing else can be checked")
	}
	t.Run("pipe", func(t *testing.T) {
		// trace --duration stops by itself; -w - streams a capture that
		// report -r - reads from a pipe.
		if rc := readFile(t, filepath.Join(out, "pipe.rc")); rc != "0 0" {
			t.Fatalf("trace | report exit codes %q: %s", rc, readFile(t, filepath.Join(out, "pipe.err")))
		}
		_, lines := jsonLines(t, filepath.Join(out, "pipe.jsonl"))
		kinds := map[any]int{}
		for _, m := range lines {
			kinds[m["kind"]]++
		}
		if kinds["plan"] != 1 || kinds["summary"] != 1 {
			t.Errorf("report of the piped capture: %v", kinds)
		}
	})
	t.Run("selftest", func(t *testing.T) {
		if rc := readFile(t, filepath.Join(out, "selftest.rc")); rc != "0" {
			t.Errorf("ctprobe selftest exit %s", rc)
		}
		if txt := readFile(t, filepath.Join(out, "selftest.txt")); !strings.Contains(txt, "ctprobe sees what the kernel counts here") {
			t.Errorf("selftest verdict missing:\n%s", txt)
		}
	})
	t.Run("overload", func(t *testing.T) { checkOverload(t, out) })
	for _, s := range scenarios {
		t.Run(s.name, func(t *testing.T) { checkScenario(t, out, s.name, k) })
	}
}

// guestKernel is what ctprobe can use on the kernel the VM booted, known
// from its release (Debian builds module BTF from 5.11 on).
type guestKernel struct {
	release     string
	fentry      bool // on nf_conntrack's functions: module BTF, 5.11+
	session     bool // kprobe.session, 6.10+
	taskStorage bool // task storage for tracing programs, 5.13+
}

func guestKernelOf(release string) guestKernel {
	var major, minor int
	fmt.Sscanf(release, "%d.%d", &major, &minor)
	at := func(ma, mi int) bool { return major > ma || major == ma && minor >= mi }
	return guestKernel{release: release, fentry: at(5, 11), session: at(6, 10), taskStorage: at(5, 13)}
}

// On a distribution kernel every probe point attaches: with fentry where
// the kernel has module BTF, else with kprobes, saying why.
func checkProbes(t *testing.T, out string) guestKernel {
	var probes struct {
		Kernel    string `json:"kernel"`
		Fentry    string `json:"fentry"`
		Traceable bool   `json:"traceable"`
		Plan      []struct {
			Point, Function, Mode, Status, Reason string
		} `json:"plan"`
	}
	readJSON(t, filepath.Join(out, "probes.json"), &probes)
	k := guestKernelOf(probes.Kernel)
	fentryOK := probes.Fentry == "yes"
	if !k.fentry {
		fentryOK = strings.HasPrefix(probes.Fentry, "no: ") && strings.Contains(probes.Fentry, "CONFIG_DEBUG_INFO_BTF_MODULES")
	}
	if !probes.Traceable || !fentryOK {
		t.Errorf("kernel %s: traceable %v, fentry %q: %+v", probes.Kernel, probes.Traceable, probes.Fentry, probes.Plan)
	}
	for _, p := range probes.Plan {
		if p.Status != "attached" {
			t.Errorf("%s (%s): %s: %s", p.Point, p.Function, p.Status, p.Reason)
		}
	}
	t.Logf("kernel %s: %+v", probes.Kernel, probes.Plan)
	return k
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// jsonLines reads a ctprobe -o json stream: the raw lines and their kinds.
func jsonLines(t *testing.T, path string) (raw []string, parsed []map[string]any) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: not JSON: %q", path, sc.Text())
		}
		raw = append(raw, sc.Text())
		parsed = append(parsed, m)
	}
	return raw, parsed
}

type packet struct {
	CT     string `json:"ct"`
	Task   bool   `json:"task"` // pid/comm are the sender's, not an incidental task's
	PID    uint32 `json:"pid"`
	Comm   string `json:"comm"`
	Netns  uint64 `json:"netns"`
	Socket *struct {
		Cookie uint64 `json:"cookie"`
		Port   uint16 `json:"port"`
	} `json:"socket"`
	Orig  *struct{ Src, Dst, Proto string } `json:"orig"`
	Reply *struct{ Src, Dst, Proto string } `json:"reply"`
}

type incidentLine struct {
	Race    int     `json:"race"`
	Outcome string  `json:"outcome"`
	Reason  string  `json:"reason"`
	Netns   uint64  `json:"netns"`
	Winner  *packet `json:"winner"`
	Loser   *packet `json:"loser"`
}

// traceMode is one of the tracers that watched a scenario: its files are
// NAME+suffix+".*".
type traceMode struct {
	suffix   string
	timeline bool // --timeline: every point, history replayed at a clash
	all      bool // --all: a record per new ct at confirm, besides the clashes
}

var (
	defaultMode  = traceMode{}
	timelineMode = traceMode{suffix: ".tl", timeline: true}
	allMode      = traceMode{suffix: ".all", all: true}
)

// checkScenario checks the three tracers that watched a scenario: the
// default mode (files NAME.*), --timeline (NAME.tl.*) and --all (NAME.all.*).
func checkScenario(t *testing.T, out, scenario string, k guestKernel) {
	p := func(suffix string) string { return filepath.Join(out, files(scenario)+suffix) }
	if rc := readFile(t, p(".lab.rc")); rc != "0" {
		t.Fatalf("ctlab exit %s: %s", rc, readFile(t, p(".lab.err")))
	}
	var stats lab.Stats
	readJSON(t, p(".lab.json"), &stats)
	var incidents int
	ok := t.Run("default", func(t *testing.T) { incidents = checkTrace(t, out, scenario, defaultMode, &stats, k) })
	t.Run("timeline", func(t *testing.T) { checkTrace(t, out, scenario, timelineMode, &stats, k) })
	t.Run("all", func(t *testing.T) { checkTrace(t, out, scenario, allMode, &stats, k) })
	// The filters are checked against the default mode's count.
	if ok && scenario == "endpoints-2" {
		checkFilters(t, p, incidents)
	}
}

// checkTrace checks one tracer's output against the kernel's counters and
// returns its number of incidents.
func checkTrace(t *testing.T, out, scenario string, mode traceMode, stats *lab.Stats, k guestKernel) int {
	p := func(suffix string) string { return filepath.Join(out, files(scenario)+mode.suffix+suffix) }
	timeline := mode.timeline
	name, variant, _ := strings.Cut(scenario, "@")
	if rc := readFile(t, p(".trace.rc")); rc != "0" {
		t.Fatalf("ctprobe trace exit %s: %s", rc, readFile(t, p(".trace.err")))
	}
	raw, lines := jsonLines(t, p(".trace.jsonl"))

	// kprobe1 runs with one kretprobe instance per function: misses are
	// expected with --timeline (kretprobes on every new flow), and must be
	// reported; anywhere else nothing is lost.
	starved := variant == "kprobe1"
	var incidents []incidentLine
	lost := map[string]uint64{}
	events, losers := 0, uint64(0)
	// --all: the cts seen inserted at confirm, with their ORIGINAL tuple (a
	// ct's address is reused, its tuple tells the generation).
	type insert struct{ ct, src, dst string }
	inserted := map[insert]bool{}
	taskKeyed := false
	for i, m := range lines {
		switch m["kind"] {
		case "event":
			events++
			if m["point"] != "confirm" {
				break
			}
			if m["result"] == "inserted" {
				o := m["orig"].(map[string]any)
				inserted[insert{m["ct"].(string), o["src"].(string), o["dst"].(string)}] = true
			} else {
				losers++
			}
		case "incident":
			var inc incidentLine
			if err := json.Unmarshal([]byte(raw[i]), &inc); err != nil {
				t.Fatal(err)
			}
			incidents = append(incidents, inc)
		case "lost":
			source := m["source"].(string)
			if !starved {
				t.Errorf("ctprobe lost records: %s", raw[i])
			}
			lost[source] += uint64(m["count"].(float64))
		case "warning":
			t.Errorf("ctprobe warned: %s", raw[i])
		case "plan":
			checkAttachMode(t, raw[i], variant, mode, k)
			taskKeyed = planKeysByTask(t, raw[i])
		}
	}
	// Only kprobe mode keys a call's entry by task, so only there can a
	// softirq's call run inside a task's under one key; each must still
	// pair with its own entry (a "no-entry" loss above fails the test).
	c := readCapture(t, p(".ctp"))
	t.Logf("%s: %d calls nested under one key", name, c.nested)
	if !taskKeyed && c.nested != 0 {
		t.Errorf("%d calls counted nested, yet no probe keys its entries by task", c.nested)
	}
	// With nothing lost, ctprobe must account for every clash exactly; with
	// reported losses it may explain fewer, never more.
	exact := len(lost) == 0
	if starved {
		t.Logf("%s: reported losses %v", scenario, lost)
		if timeline && lost["kretprobe-missed"] == 0 {
			t.Errorf("one kretprobe instance on 2 CPUs, yet no miss reported")
		}
	}
	mismatch := func(got, want uint64) bool {
		if exact {
			return got != want
		}
		return got > want
	}

	// The kernel's counters, per namespace, over the lookups, against what
	// ctprobe explained in that namespace.
	var kernelClashes, kernelDrops uint64
	for _, ns := range stats.Netns {
		var resolved, dropped uint64
		for _, inc := range incidents {
			if inc.Netns != ns.Inode {
				continue
			}
			if inc.Outcome == "dropped" {
				dropped++
			} else {
				resolved++
			}
		}
		d := ns.Delta
		if !d.HasClashResolve {
			t.Fatalf("kernel has no clash_resolve counter; this test expects 5.10+")
		}
		if mismatch(resolved, d.ClashResolve) || mismatch(dropped, d.InsertFailed) || mismatch(dropped, d.Drop) {
			t.Errorf("netns %s (%s, %d): ctprobe %d settled + %d dropped; kernel clash_resolve %d, insert_failed %d, drop %d",
				ns.Role, ns.Name, ns.Inode, resolved, dropped, d.ClashResolve, d.InsertFailed, d.Drop)
		}
		kernelClashes += d.Clashes()
		kernelDrops += d.Drop
	}
	t.Logf("%s: %d lookups, %d incidents, %d event lines, kernel clashes %d (drops %d)", name, stats.Lookups, len(incidents), events, kernelClashes, kernelDrops)
	// --all prints a line for every new ct at confirm, so every winner's
	// insert is there, and one verdict that is not a plain insert for each
	// clash the kernel counted: its loser's. The other modes print none.
	if mode.all && exact {
		for _, inc := range incidents {
			if w := inc.Winner; w == nil || w.Orig == nil || !inserted[insert{w.CT, w.Orig.Src, w.Orig.Dst}] {
				t.Errorf("--all printed no insert of the winner: %+v", w)
			}
		}
		if losers != kernelClashes {
			t.Errorf("--all printed %d losers' confirms (merged, reply-only or dropped), the kernel counted %d clashes", losers, kernelClashes)
		}
	}
	if !mode.all && events != 0 {
		t.Errorf("%d event lines without --all", events)
	}
	if mismatch(uint64(len(incidents)), kernelClashes) {
		t.Errorf("%d incidents in all, kernel counted %d clashes in the lab's namespaces", len(incidents), kernelClashes)
	}
	if kernelClashes == 0 {
		t.Fatalf("no clash in %d lookups: nothing was proven", stats.Lookups)
	}

	races := map[int]int{}
	for _, inc := range incidents {
		races[inc.Race]++
		if exact {
			checkPackets(t, &inc, stats, timeline, name == "local")
		}
	}
	t.Logf("%s: races %v", name, races)
	// With records lost, which races were seen is not the point.
	if exact {
		checkRaces(t, name, races, len(incidents), kernelDrops)
		// Every DNS reply ctlab waited for in vain is a query ctprobe saw
		// dropped, and the other way round.
		var dropped int
		for _, inc := range incidents {
			if inc.Outcome == "dropped" && inc.Loser != nil && inc.Loser.Orig != nil && strings.HasSuffix(inc.Loser.Orig.Dst, ":53") {
				dropped++
			}
		}
		if lost := stats.Lost.A + stats.Lost.AAAA; lost != dropped {
			t.Errorf("ctlab lost %d replies (A %d, AAAA %d), ctprobe saw %d DNS queries dropped", lost, stats.Lost.A, stats.Lost.AAAA, dropped)
		}
	}

	// The report of the capture equals the live output.
	if rc := readFile(t, p(".report.rc")); rc != "0" {
		t.Fatalf("ctprobe report exit %s: %s", rc, readFile(t, p(".report.err")))
	}
	replayRaw, replay := jsonLines(t, p(".report.jsonl"))
	if got, want := comparable(replayRaw, replay), comparable(raw, lines); !slices.Equal(got, want) {
		t.Errorf("report differs from the live run: %d vs %d incident/summary lines", len(got), len(want))
	}
	return len(incidents)
}

// checkPackets checks both packets of an incident: tuples always; the sender
// of a DNS query (ctlab's pid and socket) with --timeline, which follows the
// skb from the pod's netns, and in the default mode wherever a sender is
// named, which must be everywhere when the socket is in the netns that
// clashed (local).
func checkPackets(t *testing.T, inc *incidentLine, stats *lab.Stats, timeline, local bool) {
	if len(stats.Sockets) == 0 {
		t.Fatal("ctlab reported no sockets: senders cannot be checked")
	}
	cookies := map[uint64]bool{}
	for _, s := range stats.Sockets {
		cookies[s.Cookie] = true
	}
	for role, pk := range map[string]*packet{"loser": inc.Loser, "winner": inc.Winner} {
		if pk == nil || pk.Orig == nil || pk.Reply == nil || pk.Orig.Src == "" || pk.Reply.Src == "" {
			t.Errorf("%s missing or without tuples: %+v", role, inc)
			return
		}
	}
	checkTuples(t, inc)
	for role, pk := range map[string]*packet{"loser": inc.Loser, "winner": inc.Winner} {
		// The DNS queries come from ctlab's sockets, whether the race
		// happened in the sender's netns or at a node it crossed; other
		// flows (a VXLAN tunnel's outer packets) have no sending process.
		if !strings.HasSuffix(pk.Orig.Dst, ":53") {
			continue
		}
		// The default mode knows the loser's task where the skb was made in
		// the netns that clashed, and the winner's socket when both share
		// one ORIGINAL tuple.
		needTask := timeline || local && role == "loser"
		needSock := timeline || local && (role == "loser" || *pk.Orig == *inc.Loser.Orig)
		if (needTask || pk.Task) && (!pk.Task || pk.PID != uint32(stats.Pid)) {
			t.Errorf("%s sender: task %v pid %d (%s), want ctlab's %d", role, pk.Task, pk.PID, pk.Comm, stats.Pid)
		}
		if (needSock || pk.Socket != nil) && (pk.Socket == nil || !cookies[pk.Socket.Cookie]) {
			t.Errorf("%s socket %+v is not one of ctlab's", role, pk.Socket)
		}
	}
}

// checkTuples checks that the race named fits both packets' tuples, as a
// reader of the incident would: race 1 identical tuples; race 2 and 3 one
// ORIGINAL tuple with different replies (race 3: another endpoint); race 4
// different ORIGINAL tuples sharing the reply.
func checkTuples(t *testing.T, inc *incidentLine) {
	l, w := inc.Loser, inc.Winner
	sameO, sameR := *l.Orig == *w.Orig, *l.Reply == *w.Reply
	var ok bool
	switch inc.Race {
	case 1:
		ok = sameO && sameR
	case 2:
		ok = sameO && !sameR
	case 3:
		ok = sameO && l.Reply.Src != w.Reply.Src
	case 4:
		ok = !sameO && sameR
	case 5:
		ok = l.Orig.Src == w.Reply.Src && l.Orig.Dst == w.Reply.Dst // each sent the other's reply
	default:
		ok = true // race 0 is reported as unclassified elsewhere
	}
	if !ok {
		t.Errorf("race %d does not fit the tuples: loser %+v / %+v, winner %+v / %+v", inc.Race, *l.Orig, *l.Reply, *w.Orig, *w.Reply)
	}
}

// checkFilters checks the tracers that ran beside the main one: filters are
// applied in the kernel, and -c stops after that many incidents.
func checkFilters(t *testing.T, p func(string) string, all int) {
	count := func(lines []map[string]any) (incidents, summaries int) {
		for _, m := range lines {
			switch m["kind"] {
			case "incident":
				incidents++
			case "summary":
				if m["final"] == true {
					summaries++
				}
			}
		}
		return
	}
	read := func(suffix string) []map[string]any {
		_, lines := jsonLines(t, p(suffix))
		return lines
	}
	lines := read(".host.jsonl")
	if n, s := count(lines); n != all || s != 1 {
		t.Errorf("--host 10.96.0.10: %d incidents (want all %d), %d final summaries", n, all, s)
	}
	// --interval 1s: summaries of each interval before the final one, one
	// after the other (each starts where the last ended), counting no more
	// than the run. (How many they count depends on when the lookups ran:
	// a fast kernel may race them all within the final second.)
	var intervals int
	var sum float64
	var lastEnd any
	for _, m := range lines {
		if m["kind"] == "summary" && m["final"] == false {
			if intervals > 0 && m["start"] != lastEnd {
				t.Errorf("--interval 1s: interval %d starts at %v, the previous one ended at %v", intervals, m["start"], lastEnd)
			}
			intervals++
			sum += m["incidents"].(float64)
			lastEnd = m["end"]
		}
	}
	if intervals == 0 || sum > float64(all) {
		t.Errorf("--interval 1s: %d interval summaries counting %v incidents (run: %d)", intervals, sum, all)
	}
	if n, s := count(read(".port9999.jsonl")); n != 0 || s != 1 {
		t.Errorf("--port 9999: %d incidents (want 0), %d summaries", n, s)
	}
	if rc := readFile(t, p(".count2.rc")); rc != "0" {
		t.Errorf("-c 2 did not stop by itself: %s", rc)
	}
	if n, _ := count(read(".count2.jsonl")); n != 2 {
		t.Errorf("-c 2 printed %d incidents", n)
	}
}

// planKeysByTask says whether the plan attached a point as a kprobe and
// kretprobe pair, whose entries are keyed by task. (The clash point's pair
// keeps no stack: it cannot nest, bottom halves are off inside confirm.)
func planKeysByTask(t *testing.T, line string) bool {
	var plan struct {
		Points []struct{ Point, Mode, Status string } `json:"points"`
	}
	if err := json.Unmarshal([]byte(line), &plan); err != nil {
		t.Fatal(err)
	}
	for _, p := range plan.Points {
		if p.Status == "attached" && p.Mode == "kprobe" && p.Point != "clash" {
			return true
		}
	}
	return false
}

// checkAttachMode checks that every probe point the mode needs attached, in
// the mode asked. The default mode needs only the clash probe, and confirm
// where that is missing (noclash); --all needs both.
func checkAttachMode(t *testing.T, line, attach string, mode traceMode, k guestKernel) {
	var plan struct {
		Points []struct{ Point, Function, Mode, Status, Reason string } `json:"points"`
	}
	if err := json.Unmarshal([]byte(line), &plan); err != nil {
		t.Fatal(err)
	}
	for _, p := range plan.Points {
		want := "attached"
		switch {
		case attach == "noclash" && p.Point == "clash":
			want = "skipped"
		case !mode.timeline && p.Point != "clash" && !(p.Point == "confirm" && (attach == "noclash" || mode.all)):
			want = "unused"
		}
		if p.Status != want {
			t.Errorf("%s (%s) %s, want %s: %s", p.Point, p.Function, p.Status, want, p.Reason)
		}
		// auto picks fentry where the kernel has module BTF, and says why
		// where it fell back to kprobe (6.1 refuses fentry on
		// nf_ct_resolve_clash).
		wantMode := "fentry"
		if strings.HasPrefix(attach, "kprobe") || !k.fentry {
			wantMode = "kprobe"
			// --all's confirm takes kprobe.session on 6.10+, and says why
			// not where it keeps the kretprobe: before 6.10, and with
			// --max-active (kprobe1). (Without the clash probe it takes
			// the entry and exit that index cts by tuple.)
			if p.Point == "confirm" && mode.all && !mode.timeline && attach != "noclash" {
				why := "kprobe.session: not in this kernel"
				if attach == "kprobe1" {
					why = "kprobe.session: not used: --max-active"
				} else if k.session {
					wantMode, why = "kprobe.session", ""
				}
				if !strings.Contains(p.Reason, why) {
					t.Errorf("confirm attached as %s without saying %q: %s", p.Mode, why, p.Reason)
				}
				// The kprobe pair keeps the skb in task storage on 5.13+,
				// in a hash map before.
				keep := "skb waits in a hash map"
				if k.taskStorage {
					keep = "skb waits in task storage"
				}
				if wantMode == "kprobe" && !strings.Contains(p.Reason, keep) {
					t.Errorf("confirm's kprobe pair: want %q: %s", keep, p.Reason)
				}
			}
		}
		fellBack := wantMode == "fentry" && p.Mode == "kprobe" && strings.Contains(p.Reason, p.Function+" fentry: ")
		if want == "attached" && p.Point != "origin" && p.Mode != wantMode && !fellBack {
			t.Errorf("%s attached as %s, want %s: %s", p.Point, p.Mode, wantMode, p.Reason)
		}
	}
}

// checkRaces checks which race types a scenario must (not) produce.
func checkRaces(t *testing.T, name string, races map[int]int, incidents int, kernelDrops uint64) {
	switch name {
	case "endpoints-1", "nonat":
		if races[1] != incidents {
			t.Errorf("one endpoint gives identical tuples only (race 1): %v", races)
		}
	case "endpoints-2", "ipv6":
		if races[3] == 0 {
			t.Errorf("two endpoints gave no race 3 in %d incidents", incidents)
		}
	case "snat-one-port":
		if races[4] != incidents || kernelDrops == 0 {
			t.Errorf("SNAT to one port must give only race 4 drops: %v, drops %d", races, kernelDrops)
		}
	}
	if races[0] != 0 {
		t.Errorf("%d incidents unclassified", races[0])
	}
}

// comparable keeps the lines whose content does not depend on when they were
// printed: events, then incidents and the final summary, each in their
// order. (An incident waits out the reorder window, which ends by the clock
// when tracing live and at a later record in a report, so where it falls
// among the events differs.)
func comparable(raw []string, lines []map[string]any) []string {
	var events, rest []string
	for i, m := range lines {
		switch m["kind"] {
		case "event":
			events = append(events, raw[i])
		case "incident", "summary":
			rest = append(rest, raw[i])
		}
	}
	return append(events, rest...)
}
