// Package e2e proves ctprobe on a real distribution kernel: it boots a stock
// Debian kernel under QEMU, provokes races with ctlab while `ctprobe trace`
// runs, and checks what ctprobe reports against the kernel's own counters.
package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ctprobe/ctprobe/lab"
)

// scenarios and how many lookups each gets (about 30 lookups/s under TCG):
// what make e2e runs (make test: every one on 6.12, MATRIX_SCENARIOS of
// them on 6.1 and 5.10).
var scenarios = []scenario{
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

// diagnoses are issue 19's scenarios, which only `make e2e-diagnoses` runs
// (E2E_DIAGNOSES=1; E2E_SCENARIOS may name them too), never make test:
// each costs a kernel's run about 1 to 2 minutes under TCG (the tracers
// attach, then their reports), whatever its lookups, and make test is at
// CI's 45 minutes on two cores.
var diagnoses = []scenario{
	// Race 4 against an entry 1.5 s old, not a racer.
	{"snat-one-port-held", 5},
	// kube-proxy's fix of the seed's double SNAT of a VXLAN flow.
	{"vxlan-masq-fixed", 30},
	// Race 2 with ports apart: MASQUERADE --random-fully (inserted
	// reply-only on every kernel of CI, all 5.6+).
	{"masq-random-fully", 100},
	// Race 5 with a NAT table loaded: merged on 6.12+; before, dropped or
	// the port moved (no counter: the peers see it). TCP without NAT:
	// dropped on every kernel.
	{"reverse-udp", 100},
	{"reverse-tcp", 60},
	// Drops that are not clashes: a full table, and hash chains too long
	// (5.15+).
	{"table-full", 30},
	{"chain-too-long", 0},
	// The lookup names a winner of any age: race 4 against an entry 1.5 s
	// old is race 4, not race 0.
	{"snat-one-port-held@noclash", 5},
}

// notJudged are the base scenarios that ctprobe doctor does not judge
// before the run (doctor_judge in e2e/guest.sh), and why: what they
// provoke is not in the rules and settings doctor reads beforehand.
var notJudged = map[string]string{
	"table-full":     "the run's own flows fill the table; before it, the table has room",
	"chain-too-long": "doctor reads rules and settings, not the hash table's chains",
	// Run on this machine: doctor names no race 5 (nothing in rules or
	// settings shows two peers opening a flow to each other at once), and
	// takes reverse-udp's never-matching MASQUERADE for a race-4 risk.
	"reverse-udp": "a reverse collision is two peers sending to each other at once, which no rule or setting shows",
	"reverse-tcp": "a reverse collision is two peers sending to each other at once, which no rule or setting shows",
}

// judgedByDoctor: doctor judged the base scenarios but those of notJudged
// (e2e/doctor_test.go).
func judgedByDoctor(scenario string) bool {
	return !strings.Contains(scenario, "@") && notJudged[scenario] == ""
}

type scenario struct {
	name    string
	lookups int
}

// files is the prefix of a scenario's result files in the guest's /out.
func files(name string) string { return strings.ReplaceAll(name, "@", "-") }

// narrowed keeps the items of list that the environment variable env names
// (a,b,...), or all where it is unset. A name that is not in the list fails
// the test: a misspelt narrowing must not pass by checking nothing.
func narrowed[T any](t *testing.T, env string, list []T, name func(T) string) []T {
	only := os.Getenv(env)
	if only == "" {
		return list
	}
	var kept []T
	for _, n := range strings.Split(only, ",") {
		i := slices.IndexFunc(list, func(x T) bool { return name(x) == n })
		if i < 0 {
			t.Fatalf("%s=%s: no %q here", env, only, n)
		}
		kept = append(kept, list[i])
	}
	return kept
}

func TestVMLab(t *testing.T) {
	// E2E_SCENARIOS=a,b (of either list) and E2E_MODES=a,b run only those
	// (the make targets of the kernel matrix narrow some kernels so; see
	// the Makefile); E2E_DIAGNOSES=1 runs the diagnoses instead of the
	// scenarios.
	if os.Getenv("E2E_DIAGNOSES") == "1" {
		scenarios = diagnoses
	}
	if os.Getenv("E2E_SCENARIOS") != "" {
		scenarios = narrowed(t, "E2E_SCENARIOS", slices.Concat(scenarios, diagnoses), func(s scenario) string { return s.name })
	}
	modes = traceModes[:3]
	if os.Getenv("E2E_MODES") != "" {
		modes = narrowed(t, "E2E_MODES", traceModes, func(m traceMode) string { return m.name })
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
		if kinds["header"] != 1 || kinds["plan"] != 1 || kinds["summary"] != 1 {
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
// from its release and machine (Debian builds module BTF from 5.11 on;
// docs/kernel-notes.md, Architectures).
type guestKernel struct {
	release     string
	machine     string // uname -m: x86_64 or aarch64
	fentry      bool   // on nf_conntrack's functions: module BTF, 5.11+; arm64 6.0+
	session     bool   // kprobe.session, 6.10+; arm64 6.14+
	sessionCtx  bool   // 7.0+: the session kfuncs take the context
	taskStorage bool   // task storage for tracing programs, 5.13+
	// preemptible: uname -v says PREEMPT or PREEMPT_RT, so a trampoline
	// program can be preempted (docs/kernel-notes.md, Attaching and
	// detaching).
	preemptible bool
	// reverseMerge: a UDP reverse collision keeps its port and is merged
	// (d8f84a9bc7c4, a4e6a1031e77: 6.12)
	reverseMerge bool
}

func guestKernelOf(release, machine string) guestKernel {
	var major, minor int
	fmt.Sscanf(release, "%d.%d", &major, &minor)
	at := func(ma, mi int) bool { return major > ma || major == ma && minor >= mi }
	k := guestKernel{release: release, machine: machine, fentry: at(5, 11), session: at(6, 10), sessionCtx: at(7, 0), taskStorage: at(5, 13),
		reverseMerge: at(6, 12)}
	if machine == "aarch64" {
		// BPF trampolines came to arm64 in 6.0 (efc9909fdce0 "bpf, arm64:
		// Add bpf trampoline for arm64"); fprobe, which kprobe.session
		// needs, only once it ran on the function graph tracer (6.14,
		// 4346ba160409 "fprobe: Rewrite fprobe on function-graph tracer"):
		// Debian's arm64 6.12 has no CONFIG_FPROBE, its 7.2 has.
		k.fentry, k.session = at(6, 0), at(6, 14)
	}
	return k
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
	k := guestKernelOf(probes.Kernel, readFile(t, filepath.Join(out, "machine")))
	for _, w := range strings.Fields(readFile(t, filepath.Join(out, "version"))) {
		k.preemptible = k.preemptible || w == "PREEMPT" || w == "PREEMPT_RT"
	}
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
	t.Logf("kernel %s (%s, preemptible %v): %+v", probes.Kernel, k.machine, k.preemptible, probes.Plan)
	return k
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
	Race       int     `json:"race"`
	Outcome    string  `json:"outcome"`
	Reason     string  `json:"reason"`
	Mitigation string  `json:"mitigation"`
	Netns      uint64  `json:"netns"`
	Winner     *packet `json:"winner"`
	Loser      *packet `json:"loser"`
}

// counted: the kernel counted the clash (clash_resolve or insert_failed);
// a port moved by NAT instead counts nowhere.
func (inc *incidentLine) counted() bool { return inc.Outcome != "port-moved" }

type findingLine struct {
	ID     string  `json:"id"`
	Netns  uint64  `json:"netns"`
	Reason string  `json:"reason"`
	Flow   *packet `json:"flow"`
}

// summaryLine is what the checks read of the final summary.
type summaryLine struct {
	Final bool `json:"final"`
	Netns []struct {
		Netns       uint64 `json:"netns"`
		Unexplained *struct {
			InsertFailed uint64   `json:"insert_failed"`
			Drop         uint64   `json:"drop"`
			Reasons      []string `json:"reasons"`
		} `json:"unexplained"`
	} `json:"netns"`
	Findings []struct {
		ID    string `json:"id"`
		Netns uint64 `json:"netns"`
		Count uint64 `json:"count"`
	} `json:"findings"`
}

// traceMode is one of the tracers that watched a scenario: its files are
// NAME+suffix+".*".
type traceMode struct {
	name     string // as E2E_MODES and e2e/guest.sh's MODES say it
	suffix   string
	timeline bool // --timeline: every point, history replayed at a clash
	all      bool // --all: a record per new ct at confirm, besides the clashes
}

var (
	defaultMode  = traceMode{name: "default"}
	timelineMode = traceMode{name: "timeline", suffix: ".tl", timeline: true}
	allMode      = traceMode{name: "all", suffix: ".all", all: true}
	// --all --timeline: every point's record of every new flow, so the
	// most records built in task context, where a preemptible kernel can
	// preempt a program (docs/kernel-notes.md, Attaching and detaching).
	allTimelineMode = traceMode{name: "all-timeline", suffix: ".atl", timeline: true, all: true}
	// traceModes are the modes e2e/guest.sh can run; the first three run
	// unless E2E_MODES picks others.
	traceModes = []traceMode{defaultMode, timelineMode, allMode, allTimelineMode}
	modes      []traceMode
)

// checkScenario checks the tracers that watched a scenario, one per mode.
func checkScenario(t *testing.T, out, scenario string, k guestKernel) {
	p := func(suffix string) string { return filepath.Join(out, files(scenario)+suffix) }
	if rc := readFile(t, p(".lab.rc")); rc != "0" {
		t.Fatalf("ctlab exit %s: %s", rc, readFile(t, p(".lab.err")))
	}
	var stats lab.Stats
	readJSON(t, p(".lab.json"), &stats)
	// What every thread of the first mode's tracer holds after attaching.
	t.Run("caps", func(t *testing.T) {
		checkCaps(t, readFile(t, p(".caps")), k.release, readFile(t, filepath.Join(out, "unpriv_bpf_disabled")))
	})
	var incidents int
	defaultOK := false
	for _, m := range modes {
		var n int
		ok := t.Run(m.name, func(t *testing.T) { n = checkTrace(t, out, scenario, m, &stats, k) })
		if m == defaultMode {
			incidents, defaultOK = n, ok
		}
	}
	if judgedByDoctor(scenario) {
		t.Run("doctor", func(t *testing.T) { checkDoctor(t, out, scenario, modes[0]) })
	}
	// The filters ran beside the default mode and are checked against its
	// count (e2e/guest.sh); the pcapng export reads the --all capture.
	if defaultOK && scenario == "endpoints-2" {
		checkFilters(t, p, incidents)
	}
	if slices.Contains(modes, allMode) && scenario == "endpoints-2" {
		t.Run("pcapng", func(t *testing.T) { checkPCAPNG(t, out, scenario) })
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
	// reported; anywhere else nothing is lost but what preemption skips (below).
	starved := variant == "kprobe1"
	var incidents []incidentLine
	var findings []findingLine
	var final summaryLine
	lost := map[string]uint64{}
	events, losers := 0, uint64(0)
	// --all: the cts seen inserted at confirm, with their ORIGINAL tuple (a
	// ct's address is reused, its tuple tells the generation).
	type insert struct{ ct, src, dst string }
	inserted := map[insert]bool{}
	var insertedLines []map[string]any
	taskKeyed := false
	var kprobes map[string]string // the points attached through kprobes (the plan)
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
				insertedLines = append(insertedLines, m)
			} else {
				losers++
			}
		case "incident":
			var inc incidentLine
			if err := json.Unmarshal([]byte(raw[i]), &inc); err != nil {
				t.Fatal(err)
			}
			incidents = append(incidents, inc)
		case "finding":
			var f findingLine
			if err := json.Unmarshal([]byte(raw[i]), &f); err != nil {
				t.Fatal(err)
			}
			findings = append(findings, f)
		case "summary":
			if m["final"] == true {
				if err := json.Unmarshal([]byte(raw[i]), &final); err != nil {
					t.Fatal(err)
				}
			}
		case "lost":
			source := m["source"].(string)
			// Runs the kernel skipped and counted (docs/kernel-notes.md,
			// Attaching and detaching, Skipped runs): on a preemptible
			// kernel a trampoline program preempted on its CPU makes the
			// next run of the same program there skip (its per-CPU
			// active count, ca06f55b9002, 5.12; seen on PREEMPT_RT with
			// --all --timeline), and a kprobe program that fires while
			// another BPF program runs on its CPU (an interrupt's softirq
			// inside a probe, frequent under TCG) is skipped by
			// trace_call_bpf, counted from 6.7 (dd8657894c11; seen on
			// sid's 7.2 with --timeline). Counted losses, never torn
			// records: the counts below may then fall short, never
			// exceed the kernel's.
			skipped := source == "recursion-missed" && (k.preemptible || len(kprobes) > 0)
			if !starved && !skipped {
				t.Errorf("ctprobe lost records: %s", raw[i])
			}
			lost[source] += uint64(m["count"].(float64))
		case "warning":
			t.Errorf("ctprobe warned: %s", raw[i])
		case "plan":
			checkAttachMode(t, raw[i], variant, mode, k)
			kprobes = kprobePoints(t, raw[i])
			taskKeyed = planKeysByTask(kprobes)
		}
	}
	if !final.Final {
		t.Errorf("no final summary")
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
		// Whether calls overlap (and a kretprobe misses) depends on
		// timing: that every shortfall is reported is what holds every time
		// (mismatch below).
		t.Logf("%s: kretprobe misses reported %d", scenario, lost["kretprobe-missed"])
	}
	mismatch := func(got, want uint64) bool {
		if exact {
			return got != want
		}
		return got > want
	}

	// The kernel's counters, per namespace, over the lookups, against what
	// ctprobe explained in that namespace: settled clashes, and the
	// inserts that failed (dropped clashes, and the findings of inserts
	// that failed without one). Every drop is a clash's, except in
	// table-full, whose drops happen before any entry exists.
	// The default mode does not probe confirm, so an insert that failed
	// without a clash is not seen one by one there: the kernel's
	// chaintoolong counter stands for those (the summary names it:
	// checkFindings).
	confirmProbed := mode.all || mode.timeline || variant == "noclash"
	var kernelClashes, kernelDrops, chainTooLong, unseen uint64
	for _, ns := range stats.Netns {
		var resolved, dropped, failed uint64
		for _, inc := range incidents {
			switch {
			case inc.Netns != ns.Inode || !inc.counted():
			case inc.Outcome == "dropped":
				dropped++
			default:
				resolved++
			}
		}
		for _, f := range findings {
			if f.Netns == ns.Inode && (f.ID == "conntrack-chain-too-long" || f.ID == "conntrack-insert-dying") {
				failed++
			}
		}
		d := ns.Delta
		if !d.HasClashResolve {
			t.Fatalf("kernel has no clash_resolve counter; this test expects 5.10+")
		}
		if !confirmProbed {
			failed += d.ChainTooLong
			unseen += d.ChainTooLong
		}
		drops := mismatch(dropped, d.Drop) && name != "table-full"
		if mismatch(resolved, d.ClashResolve) || mismatch(dropped+failed, d.InsertFailed) || drops {
			t.Errorf("netns %s (%s, %d): ctprobe %d settled + %d dropped + %d inserts failed; kernel clash_resolve %d, insert_failed %d, drop %d",
				ns.Role, ns.Name, ns.Inode, resolved, dropped, failed, d.ClashResolve, d.InsertFailed, d.Drop)
		}
		kernelClashes += d.Clashes()
		kernelDrops += d.Drop
		if ns.Role == "node" {
			chainTooLong += d.ChainTooLong // (fill's entries were made through ctnetlink before)
		}
	}
	t.Logf("%s: %d lookups, %d incidents, %d findings, %d event lines, kernel clashes %d (drops %d)", name, stats.Lookups, len(incidents), len(findings), events, kernelClashes, kernelDrops)
	// --all prints a line for every new ct at confirm, so every winner's
	// insert is there, and one verdict that is not a plain insert for each
	// clash or failed insert the kernel counted: its loser's. The other
	// modes print none.
	if mode.all && exact {
		for _, inc := range incidents {
			if w := inc.Winner; w == nil || w.Orig == nil || !inserted[insert{w.CT, w.Orig.Src, w.Orig.Dst}] {
				t.Errorf("--all printed no insert of the winner: %+v", w)
			}
		}
		if losers != kernelClashes {
			t.Errorf("--all printed %d losers' confirms (merged, reply-only or dropped), the kernel counted %d clashes and failed inserts", losers, kernelClashes)
		}
	}
	if !mode.all && events != 0 {
		t.Errorf("%d event lines without --all", events)
	}
	checkEventRecords(t, raw, lines)
	var counted uint64
	for _, inc := range incidents {
		if inc.counted() {
			counted++
		}
	}
	if mismatch(counted+uint64(len(findings)-tunnelFindings(findings))+unseen, kernelClashes) {
		t.Errorf("%d incidents and findings of failed inserts in all, kernel counted %d clashes and failed inserts in the lab's namespaces", len(incidents), kernelClashes)
	}
	// What the scenario is there to show must have happened.
	switch name {
	case "table-full":
		if kernelDrops == 0 {
			t.Fatalf("no drop in %d lookups: the table never filled", stats.Lookups)
		}
	case "chain-too-long":
		if chainTooLong == 0 {
			t.Fatalf("no chain too long in a flood: nothing was proven")
		}
	case "reverse-udp":
		if kernelClashes == 0 && stats.PortMoved == 0 {
			t.Fatalf("no reverse collision in %d attempts: nothing was proven", stats.Lookups)
		}
	default:
		if kernelClashes == 0 {
			t.Fatalf("no clash in %d lookups: nothing was proven", stats.Lookups)
		}
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
		checkRaces(t, name, mode, incidents, races, len(incidents), kernelDrops, stats, k)
		checkFindings(t, name, mode, findings, insertedLines, &final, stats, k)
		// A DNS query ctprobe saw dropped never got its reply: ctlab waited
		// for it in vain. (ctlab may also give up on a reply that is only
		// late, on a loaded host: how many drops there were is checked
		// against the kernel's drop counter above, not against ctlab's
		// timeouts. A full table drops queries before any clash:
		// checkFindings.)
		var dropped, peersDropped int
		for _, inc := range incidents {
			if inc.Outcome != "dropped" || inc.Loser == nil || inc.Loser.Orig == nil {
				continue
			}
			if strings.HasSuffix(inc.Loser.Orig.Dst, ":53") {
				dropped++
			} else {
				peersDropped++
			}
		}
		if lost := stats.Lost.A + stats.Lost.AAAA; lost < dropped {
			t.Errorf("ctlab lost %d replies (A %d, AAAA %d), fewer than the %d DNS queries ctprobe saw dropped", lost, stats.Lost.A, stats.Lost.AAAA, dropped)
		} else if lost > dropped && name != "table-full" {
			t.Logf("%s: %d replies came later than ctlab's timeout (%v) or not at all, beside the %d dropped", name, lost-dropped, stats.Timeout, dropped)
		}
		// The peers of reverse-udp miss every datagram that was dropped
		// (and, on a loaded host, some that only came late).
		if name == "reverse-udp" && stats.PeerLost < peersDropped {
			t.Errorf("ctlab's peers missed %d datagrams, fewer than the %d ctprobe saw dropped", stats.PeerLost, peersDropped)
		}
	}

	// The report of the capture equals the live output.
	if rc := readFile(t, p(".report.rc")); rc != "0" {
		t.Fatalf("ctprobe report exit %s: %s", rc, readFile(t, p(".report.err")))
	}
	replayRaw, replay := jsonLines(t, p(".report.jsonl"))
	sameOutput(t, comparable(raw, lines), comparable(replayRaw, replay))
	return len(incidents)
}

// tunnelFindings counts the findings that are not failed inserts.
func tunnelFindings(fs []findingLine) int {
	n := 0
	for _, f := range fs {
		if f.ID == "tunnel-double-snat" {
			n++
		}
	}
	return n
}
