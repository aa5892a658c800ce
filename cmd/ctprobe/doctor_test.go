package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// A namespace that will drop packets makes doctor exit 3 after printing
// its findings, with no error line; one that will not, 0.
func TestDoctorExitStatus(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := exec.LookPath("iptables-legacy-save"); err != nil {
		t.Skip("iptables-legacy not installed (scripts/deps.sh)")
	}
	name := fmt.Sprintf("ctdoccli%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", name).Run()
	path := "/run/netns/" + name

	code, stdout, stderr := runCLI("doctor", "--netns", path)
	if code != 0 || stderr != "" || !strings.Contains(stdout, "0 finding(s) drop packets") {
		t.Errorf("empty namespace: exit %d, stderr %q, stdout:\n%s", code, stderr, stdout)
	}
	rule := []string{"netns", "exec", name, "iptables-legacy", "-t", "nat", "-A", "POSTROUTING", "-p", "udp", "-j", "SNAT", "--to-source", "192.0.2.1:40000"}
	if out, err := exec.Command("ip", rule...).CombinedOutput(); err != nil {
		t.Fatalf("iptables: %v: %s", err, out)
	}
	code, stdout, stderr = runCLI("doctor", "--netns", path)
	if code != 3 || stderr != "" || !strings.Contains(stdout, "DROPS    snat-port-collision") {
		t.Errorf("SNAT to one port: exit %d, stderr %q, stdout:\n%s", code, stderr, stdout)
	}
	code, stdout, _ = runCLI("doctor", "--netns", path, "-o", "json")
	var rep struct {
		Kind       string `json:"kind"`
		Drops      bool   `json:"drops"`
		Namespaces []struct {
			Path     string `json:"path"`
			Findings []struct {
				ID, Severity string
			} `json:"findings"`
		} `json:"namespaces"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("JSON: %v: %s", err, stdout)
	}
	if code != 3 || rep.Kind != "doctor" || !rep.Drops || len(rep.Namespaces) != 1 || rep.Namespaces[0].Path != path ||
		len(rep.Namespaces[0].Findings) != 1 || rep.Namespaces[0].Findings[0].ID != "snat-port-collision" {
		t.Errorf("JSON report (exit %d): %+v", code, rep)
	}
}
