package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ctprobe/ctprobe/lab"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = realMain(args, &o, &e)
	return code, o.String(), e.String()
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "missing command"},
		{[]string{"frob"}, `unknown command "frob"`},
		{[]string{"run"}, "run needs --scenario"},
		{[]string{"run", "--scenario", "bogus"}, `unknown scenario "bogus"`},
		{[]string{"run", "--scenario", "endpoints-1", "--endpoints", "3"}, "always has 1"},
		{[]string{"run", "--scenario", "endpoints-2", "--nat", "ipvs"}, "use iptables or nft"},
		{[]string{"run", "--scenario", "endpoints-2", "-o", "yaml"}, "use text or json"},
		{[]string{"run", "--scenario", "endpoints-2", "--timeout", "0s"}, "--timeout must be positive"},
		{[]string{"run", "--scenario", "endpoints-2", "--lookups", "x"}, "invalid value"},
		{[]string{"run", "--bogus"}, "not defined: -bogus"},
		{[]string{"run", "--scenario", "endpoints-2", "extra"}, `unexpected argument "extra"`},
		{[]string{"scenarios", "x"}, "no arguments"},
		{[]string{"flood", "--udp-timeout", "1500ms"}, "whole seconds"},
		{[]string{"flood", "--udp-timeout", "-1s"}, "whole seconds"},
		{[]string{"flood", "--cpu", "-2"}, "--cpu: use a CPU number"},
		{[]string{"flood", "--rate", "-1"}, "--rate -1: want packets per second"},
		{[]string{"flood", "--rate", "NaN"}, "--rate NaN: want packets per second"},
		{[]string{"flood", "--established", "sctp"}, "--established \"sctp\": use udp or tcp"},
		{[]string{"flood", "--established", "udp", "--udp-timeout", "2s"}, "--udp-timeout is for new flows"},
	} {
		code, _, stderr := runCLI(tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
		if len(tc.args) > 0 && strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%q: error is not one line: %q", tc.args, stderr)
		}
	}
}

func TestHelpAndScenarios(t *testing.T) {
	code, out, _ := runCLI("run", "-h")
	if code != 0 || !strings.Contains(out, "-scenario") {
		t.Errorf("run -h: %d %q", code, out)
	}
	code, out, _ = runCLI("scenarios")
	if code != 0 {
		t.Fatalf("scenarios: exit %d", code)
	}
	for _, s := range lab.Scenarios() {
		if !strings.Contains(out, s.Name+"  ") {
			t.Errorf("scenarios output lacks %s:\n%s", s.Name, out)
		}
	}
}

func TestRunJSONPrivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip not installed")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft not installed")
	}
	code, out, stderr := runCLI("run", "--scenario", "endpoints-2", "--nat", "nft", "--lookups", "10", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var st lab.Stats
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if st.Scenario != "endpoints-2" || st.Lookups != 10 || st.Answered.Total()+st.Lost.Total() != 20 || len(st.Netns) != 4 {
		t.Errorf("stats %+v", st)
	}
	for _, n := range st.Netns {
		if _, err := os.Stat(n.Path); err == nil {
			t.Errorf("%s left behind", n.Path)
		}
	}
}

func TestFloodMarksMissing(t *testing.T) {
	code, _, stderr := runCLI("flood", "--marks", filepath.Join(t.TempDir(), "none"))
	if code != 1 || !strings.HasPrefix(stderr, "ctlab: --marks: open ") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// The way scripts/bench-guest.sh drives a flood: marks through a FIFO once
// -v says the flood started, and the FIFO's end ends it.
func TestFloodMarksPrivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip not installed")
	}
	fifo := filepath.Join(t.TempDir(), "marks")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// stderr is a file, which the test reads while ctlab writes it, as
	// the script does.
	stderr, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	logged := func() string {
		b, _ := os.ReadFile(stderr.Name())
		return string(b)
	}
	var stdout bytes.Buffer
	code := make(chan int, 1)
	go func() {
		code <- realMain([]string{"flood", "--marks", fifo, "--udp-timeout", "1s", "--duration", "1m", "--rate", "2000", "-o", "json", "-v"}, &stdout, stderr)
	}()
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0) // waits for ctlab to open it
	if err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(logged(), "ctlab: flood: ") {
		select {
		case c := <-code:
			t.Fatalf("ctlab ended (exit %d) before flooding: %s", c, logged())
		case <-time.After(10 * time.Millisecond):
		}
	}
	for _, line := range []string{"untraced", "!startup fentry all", "traced fentry all"} {
		time.Sleep(300 * time.Millisecond)
		fmt.Fprintln(w, line)
	}
	time.Sleep(300 * time.Millisecond)
	w.Close()
	if c := <-code; c != 0 {
		t.Fatalf("exit %d: %s", c, logged())
	}
	var st lab.FloodStats
	if err := json.Unmarshal(stdout.Bytes(), &st); err != nil {
		t.Fatalf("%v: %s", err, stdout.String())
	}
	if !st.PortsWrap || st.Duration > 30*time.Second || len(st.Segments) != 4 {
		t.Fatalf("flood: wrap %v, %v, segments %+v", st.PortsWrap, st.Duration, st.Segments)
	}
	var sum uint64
	for i, want := range []string{"", "untraced", "startup fentry all", "traced fentry all"} {
		g := st.Segments[i]
		sum += g.Packets
		// None in the pause; in a sending segment some, never more than
		// --rate allows over the segment's own duration (how many depends on
		// how busy the machine is: not checked).
		paused := i == 2
		most := uint64(2000*g.Duration.Seconds()) + 100
		if g.Label != want || g.Paused != paused || g.Duration < 250*time.Millisecond ||
			paused && g.Packets > 1 || !paused && (g.Packets == 0 || g.Packets > most) {
			t.Errorf("segment %d: %+v; want label %q, at least 250 ms, paused %v, at most %d packets", i, g, want, paused, most)
		}
	}
	if sum != st.Packets {
		t.Errorf("segments hold %d of %d packets", sum, st.Packets)
	}
}
