package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

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
