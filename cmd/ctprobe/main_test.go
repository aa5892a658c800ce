package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ctprobe/ctprobe/tracer"
	"github.com/ctprobe/ctprobe/tracer/capture"
	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/event/eventtest"
	"github.com/ctprobe/ctprobe/tracer/mode"
	"github.com/ctprobe/ctprobe/tracer/names"
	"github.com/ctprobe/ctprobe/tracer/probe"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// oneLine checks that a failure is reported as exactly one "ctprobe: " line.
func oneLine(t *testing.T, stderr string) {
	t.Helper()
	if !strings.HasPrefix(stderr, "ctprobe: ") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("want one line starting with \"ctprobe: \", got %q", stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"trace", "--port", "0"}, "--port"},
		{[]string{"trace", "-o", "xml"}, "want text or json"},
		{[]string{"trace", "-q"}, "needs -w FILE or --metrics ADDR"},
		{[]string{"trace", "--metrics", "9965"}, `--metrics "9965": want HOST:PORT or :PORT (e.g. :9965)`},
		{[]string{"trace", "--metrics", ":http"}, `--metrics ":http": port "http" is not a number from 1 to 65535`},
		{[]string{"trace", "--log-format", "xml"}, `--log-format "xml": want text or json`},
		{[]string{"trace", "--rotate-size", "64MiB"}, "--rotate-size needs -w DIR/NAME.ctp"},
		{[]string{"trace", "-w", "-", "--rotate-size", "64MiB"}, "--rotate-size needs -w DIR/NAME.ctp"},
		{[]string{"trace", "-w", "x.ctp", "--rotate-size", "0"}, `--rotate-size "0": want a size above 0 such as 64MiB`},
		{[]string{"trace", "-w", "x.ctp", "--rotate-size", "64 MiB"}, `--rotate-size "64 MiB": want a size above 0`},
		{[]string{"trace", "-w", "x.ctp", "--rotate-count", "8"}, "--rotate-count 8: want 0 or more, with --rotate-size"},
		{[]string{"trace", "-w", "x.ctp", "--rotate-size", "1MiB", "--rotate-count", "-1"}, "--rotate-count -1"},
		{[]string{"trace", "--ring-size", "1000"}, "power of two"},
		// Every number has its range in the message, and nothing turns
		// silently into a default.
		{[]string{"trace", "--ring-size", "8589934592"}, fmt.Sprintf(`invalid value "8589934592" for flag -ring-size: want a power of two from %d to 1073741824`, os.Getpagesize())},
		{[]string{"trace", "--timeline", "--history", "4294967296"}, `invalid value "4294967296" for flag -history: want 1 to 1048576`},
		{[]string{"trace", "--timeline", "--history", "-1"}, `invalid value "-1" for flag -history: want 1 to 1048576`},
		{[]string{"trace", "--timeline", "--history", "0"}, "want 1 to 1048576"},
		{[]string{"trace", "--history", "100"}, "--history sizes what --timeline keeps in the kernel: add --timeline, or leave --history out"},
		{[]string{"trace", "--max-active", "5000"}, "want 1 to 4096"},
		{[]string{"trace", "--max-active", "0"}, "want 1 to 4096"},
		{[]string{"trace", "--attach", "fentry", "--max-active", "10"}, "--attach fentry does not use"},
		{[]string{"trace", "-c", "5", "--count", "7"}, "-c and -count are one flag, given 5 and then 7"},
		{[]string{"trace", "-c", "-1"}, "want a whole number"},
		{[]string{"trace", "--duration", "5"}, `invalid value "5" for flag -duration: want a unit, e.g. 5s`},
		{[]string{"trace", "--duration", "-5s"}, "want 0 or more"},
		{[]string{"trace", "--interval", "often"}, "want a duration such as 30s"},
		{[]string{"trace", "--interval", "1ns"}, "--interval 1ns: want 0 (a summary on exit only) or 100ms or more"},
		{[]string{"trace", "--overwrite"}, "--overwrite replaces the file of -w FILE, so it needs one"},
		{[]string{"selftest", "--lookups", "0"}, "want 1 to 1000000"},
		{[]string{"selftest", "--min-clashes", "-1"}, "want 0 to 1000000"},
		{[]string{"trace", "--bogus"}, "ctprobe help trace"},
		{[]string{"completion", "tcsh"}, "want one of bash, zsh, fish"},
		{[]string{"completion"}, "completion bash|zsh|fish"},
		{[]string{"help", "nosuch"}, "no such command"},
		{[]string{"trace", "extra"}, "unexpected argument"},
		{[]string{"report"}, "needs -r FILE"},
		// A flag's mistake is told before any capture is opened (this one
		// does not exist).
		{[]string{"report", "-r", "missing.ctp", "-o", "yaml"}, `-o "yaml": want text, json or pcapng`},
		{[]string{"report", "-r", "missing.ctp", "--race", "7"}, `--race "7"`},
		{[]string{"report", "-r", "missing.ctp", "--outcome", "lost"}, `--outcome "lost"`},
		{[]string{"report", "-r", "missing.ctp", "--port", "0"}, `--port "0"`},
		{[]string{"report", "-r", "missing.ctp", "--since", "25:00"}, `--since: time "25:00"`},
		{[]string{"report", "-r", "missing.ctp", "--until", "+soon"}, `--until: time "+soon"`},
		{[]string{"report", "-r", vmCapture510, "--since", "+2s", "--until", "+1s"}, "nothing would be selected"},
		{[]string{"report", "-r", "a.ctp", "-r", "b.ctp", "-o", "pcapng"}, "-o pcapng takes one capture"},
		{[]string{"selftest", "--scenario", "nope"}, "--scenario"},
		{[]string{"doctor", "-o", "yaml"}, "want text or json"},
		{[]string{"doctor", "--fill-threshold", "0"}, "--fill-threshold"},
		{[]string{"doctor", "--fill-threshold", "NaN"}, "--fill-threshold NaN: want a percentage"},
		{[]string{"doctor", "extra"}, "unexpected argument"},
		{[]string{"nosuch"}, "ctprobe help"},
	} {
		code, _, stderr := runCLI(c.args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2", c.args, code)
		}
		oneLine(t, stderr)
		if !strings.Contains(stderr, c.want) {
			t.Errorf("%v: %q lacks %q", c.args, stderr, c.want)
		}
	}
}

// Times of day are placed after the captures' start, so whether --until
// comes before --since is judged only once a capture is open: 23:00 to
// 01:00 spans midnight, not a usage error before the file is read.
func TestReportTimesOfDayJudgedAgainstCapture(t *testing.T) {
	inUTC(t)
	code, _, stderr := runCLI("report", "-r", filepath.Join(t.TempDir(), "missing.ctp"), "--since", "23:00:00", "--until", "01:00:00")
	if code != 1 || !strings.Contains(stderr, "no such file") {
		t.Errorf("exit %d, %q: want the missing file's error (exit 1)", code, stderr)
	}
	// The capture starts at 10:36 UTC: the window is its first evening.
	code, out, stderr := runCLI("report", "-r", vmCapture510, "--since", "23:00:00", "--until", "01:00:00", "--no-color")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if want := "selected: since 2026-12-02T23:00:00Z, until 2026-12-03T01:00:00Z\n"; !strings.Contains(out, want) {
		t.Errorf("the report lacks %q:\n%s", want, out)
	}
}

// One capture given twice, by its path again, by a glob that matches it
// too, or as a copy, would count every record twice: report refuses it.
func TestReportSameCaptureTwice(t *testing.T) {
	dir := t.TempDir()
	raw, err := os.ReadFile(vmCapture510)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(dir, "copy.ctp")
	if err := os.WriteFile(cp, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-r", vmCapture510, "-r", vmCapture510},
		{"-r", cp, "-r", filepath.Join(dir, "*.ctp")},
		{"-r", vmCapture510, "-r", cp},
	} {
		code, stdout, stderr := runCLI(append([]string{"report"}, args...)...)
		if code != 2 || stdout != "" || !strings.Contains(stderr, "are the same capture") {
			t.Errorf("%v: exit %d, %d bytes out, %q: want exit 2 naming both", args, code, len(stdout), stderr)
		}
		oneLine(t, stderr)
	}
}

func TestReportBadFiles(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.ctp")
	junk := filepath.Join(dir, "junk.ctp")
	os.WriteFile(empty, nil, 0o600)
	os.WriteFile(junk, []byte("this is not a capture file at all"), 0o600)
	for path, want := range map[string]string{
		filepath.Join(dir, "missing.ctp"): "no such file",
		empty:                             "empty",
		junk:                              "bad magic",
	} {
		code, _, stderr := runCLI("report", "-r", path)
		if code != 1 {
			t.Errorf("%s: exit %d, want 1", path, code)
		}
		oneLine(t, stderr)
		if !strings.Contains(stderr, want) {
			t.Errorf("%s: %q lacks %q", path, stderr, want)
		}
	}
}

// On a kernel where no probe can attach (this project's build machines:
// no kprobes, fentry refused) trace must fail at once with the reason.
func TestTraceReportsUnattachableKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	k, err := tracer.ProbeKernel()
	if err != nil {
		t.Fatal(err)
	}
	if k.Kprobes {
		t.Skip("kprobes attach on this kernel")
	}
	start := time.Now()
	code, stdout, stderr := runCLI("trace", "--duration", "1m")
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %v to give up", d)
	}
	if code != 1 || stdout != "" {
		t.Errorf("exit %d, stdout %q", code, stdout)
	}
	oneLine(t, stderr)
	for _, want := range []string{"CONFIG_KPROBES", "fentry", "__nf_conntrack_confirm"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("%q lacks %q", stderr, want)
		}
	}
	code, stdout, _ = runCLI("probes")
	if code != 1 || !strings.Contains(stdout, "confirm  __nf_conntrack_confirm") || !strings.Contains(stdout, "failed") ||
		!strings.Contains(stdout, "fentry      no: ") || !strings.Contains(stdout, "kprobes     no") {
		t.Errorf("probes: exit %d:\n%s", code, stdout)
	}
}

func TestTraceWithoutPrivileges(t *testing.T) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and setpriv to drop to an unprivileged user")
	}
	bin := filepath.Join(t.TempDir(), "ctprobe")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	os.Chmod(filepath.Dir(bin), 0o755)
	var stderr bytes.Buffer
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", bin, "trace")
	cmd.Stderr = &stderr
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("want exit 1, got %v", err)
	}
	oneLine(t, stderr.String())
	if !strings.Contains(stderr.String(), "needs root, or CAP_BPF and CAP_PERFMON") || !strings.Contains(stderr.String(), "missing: CAP_BPF, CAP_PERFMON") {
		t.Errorf("%q does not say what is missing", stderr.String())
	}
}

// race3 is one lookup whose A and AAAA queries were DNAT'd to different
// endpoints (eventtest.Race3), by dig.
func race3(*testing.T) [][]byte { return eventtest.Race3(0, "dig") }

func writeCapture(t *testing.T, path string, records [][]byte, trailer bool) {
	t.Helper()
	writeModeCapture(t, path, mode.All, records, trailer)
}

// writeModeCapture writes a capture as `trace` in mode (the header's Mode) would.
func writeModeCapture(t *testing.T, path string, m mode.Mode, records [][]byte, trailer bool) {
	t.Helper()
	w, err := capture.Create(path, capture.Header{RecordLayout: probe.RecordLayout, RecordSize: uint32(event.Size), Mode: m.CaptureName(), StartUnixNano: 1e18}, capture.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range records {
		if err := w.WriteRecord(0, r); err != nil {
			t.Fatal(err)
		}
	}
	if trailer {
		if err := w.Close(capture.Trailer{EndUnixNano: 1e18 + 1e9}); err != nil {
			t.Fatal(err)
		}
		return
	}
	w.Flush()
}

func incidents(t *testing.T, jsonl string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(jsonl), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		if m["kind"] == "incident" {
			out = append(out, m)
		}
	}
	return out
}

// report prints a capture's events as its trace did: every one for a
// capture of --all (with or without --timeline), none for the other modes
// unless asked with --all.
func TestReportEventsFollowCaptureMode(t *testing.T) {
	records := race3(t)
	for _, c := range []struct {
		mode mode.Mode
		args []string
		want int
	}{
		{mode.All, nil, len(records)},
		{mode.AllTimeline, nil, len(records)},
		{mode.Default, nil, 0},
		{mode.Timeline, nil, 0},
		{mode.Default, []string{"--all"}, len(records)},
	} {
		path := filepath.Join(t.TempDir(), "c.ctp")
		writeModeCapture(t, path, c.mode, records, true)
		code, stdout, stderr := runCLI(append([]string{"report", "-r", path, "-o", "json"}, c.args...)...)
		if code != 0 {
			t.Fatalf("%s %v: exit %d: %s", c.mode, c.args, code, stderr)
		}
		if got := strings.Count(stdout, `"kind":"event"`); got != c.want {
			t.Errorf("capture mode %s, report %v: %d event lines, want %d", c.mode, c.args, got, c.want)
		}
	}
}

func TestReportCapture(t *testing.T) {
	path := filepath.Join(t.TempDir(), "race3.ctp")
	writeCapture(t, path, race3(t), true)
	code, stdout, stderr := runCLI("report", "-r", path, "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	incs := incidents(t, stdout)
	if len(incs) != 1 {
		t.Fatalf("want 1 incident, got %d:\n%s", len(incs), stdout)
	}
	inc := incs[0]
	if inc["race"] != 3.0 || inc["outcome"] != "nat-clash" {
		t.Errorf("race %v outcome %v, want 3 nat-clash", inc["race"], inc["outcome"])
	}
	loser := inc["loser"].(map[string]any)
	if loser["pid"] != 4242.0 || loser["comm"] != "dig" {
		t.Errorf("loser task %v %v", loser["pid"], loser["comm"])
	}
	if r := loser["reply"].(map[string]any); r["src"] != "10.244.2.2:53" {
		t.Errorf("loser reply %v", r)
	}
	if inc["winner"] == nil {
		t.Error("no winner")
	}

	// Text output names the race too.
	_, text, _ := runCLI("report", "-r", path, "--no-color")
	if !strings.Contains(text, "race 3 (DNAT chose different endpoints)") {
		t.Errorf("text report lacks the race:\n%s", text)
	}
	// --all lists every raw event as well.
	_, all, _ := runCLI("report", "-r", path, "-o", "json", "--all")
	if n := strings.Count(all, `"kind":"event"`); n != 7 {
		t.Errorf("--all listed %d events, want 7", n)
	}
}

// -w never writes through what another user planted at its name, says
// what is there and how to go on, and fails before loading anything.
func TestTraceCaptureFileRefused(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	os.WriteFile(target, []byte("keep"), 0o644)
	symlink, fifo, existing := filepath.Join(dir, "link.ctp"), filepath.Join(dir, "fifo.ctp"), filepath.Join(dir, "old.ctp")
	os.Symlink(target, symlink)
	syscall.Mkfifo(fifo, 0o666)
	os.WriteFile(existing, []byte("old"), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-w", symlink}, "it is a symlink, not a regular file, which ctprobe never writes through: give -w a new file's name"},
		{[]string{"-w", symlink, "--overwrite"}, "it is a symlink"},
		{[]string{"-w", fifo}, "it is a FIFO"},
		{[]string{"-w", existing}, "file exists: choose another -w name, or add --overwrite to replace it"},
	} {
		code, stdout, stderr := runCLI(append([]string{"trace"}, c.args...)...)
		if code != 1 || stdout != "" {
			t.Errorf("%v: exit %d, stdout %q", c.args, code, stdout)
		}
		oneLine(t, stderr)
		if !strings.Contains(stderr, c.want) {
			t.Errorf("%v: %q lacks %q", c.args, stderr, c.want)
		}
	}
	for path, want := range map[string]string{target: "keep", existing: "old"} {
		if b, _ := os.ReadFile(path); string(b) != want {
			t.Errorf("%s now holds %q", path, b)
		}
	}
}

// The names a trace gave are in its capture: a report prints them without
// any runtime, in text and JSON, and counts the loser's pod.
func TestReportNames(t *testing.T) {
	path := filepath.Join(t.TempDir(), "named.ctp")
	w, err := capture.Create(path, capture.Header{RecordLayout: probe.RecordLayout, RecordSize: uint32(event.Size), Mode: mode.All.CaptureName(), StartUnixNano: 1e18}, capture.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod := names.Names{Pod: names.Pod{Namespace: "default", Name: "client-a", UID: "5c2a8e41-7d19-4b6e-8f02-93d4e1a7b6c2"}, Container: "lookup", ContainerID: strings.Repeat("ab", 32)}
	key := names.Key{Netns: 4026532201, PID: 4242, Addr: netip.MustParseAddr("10.244.1.2")}
	if err := w.WriteNames([]names.Entry{{Key: key, Names: pod}}); err != nil {
		t.Fatal(err)
	}
	for _, r := range race3(t) {
		if err := w.WriteRecord(0, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(capture.Trailer{EndUnixNano: 1e18 + 1e9}); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI("report", "-r", path, "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	incs := incidents(t, stdout)
	if len(incs) != 1 {
		t.Fatalf("want 1 incident, got %d", len(incs))
	}
	for _, side := range []string{"loser", "winner"} {
		got, _ := json.Marshal(incs[0][side].(map[string]any)["pod"])
		if want := `{"container":"lookup","container_id":"` + pod.ContainerID + `","name":"client-a","namespace":"default","uid":"` + pod.Pod.UID + `"}`; string(got) != want {
			t.Errorf("%s pod %s, want %s", side, got, want)
		}
	}
	if !strings.Contains(stdout, `"by_pod":[{"namespace":"default","name":"client-a","uid":"`+pod.Pod.UID+`","count":1}]`) {
		t.Errorf("summary by pod missing:\n%s", stdout)
	}
	_, text, _ := runCLI("report", "-r", path, "--no-color")
	if !strings.Contains(text, "pid 4242 dig [default/client-a/lookup]") || !strings.Contains(text, "by pod\n  default/client-a  1") {
		t.Errorf("text report lacks the names:\n%s", text)
	}
}

// probes says where a trace's names would come from, and why not the
// runtime; --no-names says they are off.
func TestProbesNamesSource(t *testing.T) {
	root := t.TempDir()
	_, stdout, _ := runCLI("probes", "-o", "json", "--host-root", root)
	var p struct{ Names names.Status }
	if err := json.Unmarshal([]byte(stdout), &p); err != nil {
		t.Fatalf("%v: %q", err, stdout)
	}
	if p.Names.Source != names.SourceNode || !strings.Contains(p.Names.Reason, filepath.Join(root, "run/containerd/containerd.sock")) {
		t.Errorf("names %+v: want the node, because no runtime socket is under the host root", p.Names)
	}
	_, stdout, _ = runCLI("probes", "--no-names")
	if !strings.Contains(stdout, "names       none: turned off (--no-names)") {
		t.Errorf("probes --no-names:\n%s", stdout)
	}
}
