package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// checkPCAPNG exports a scenario's --all capture from the VM as packets
// (ctprobe report -o pcapng, on the host) and reads them with Debian's
// tshark: one packet before and one after NAT for every new entry the
// report lists and for both sides of every incident, with the DNS names
// and the race and outcome the report gives.
func checkPCAPNG(t *testing.T, out, scenario string) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		if os.Geteuid() != 0 {
			t.Skip("tshark is not installed, and installing it needs root")
		}
		run(t, repoRoot(t), nil, "scripts/deps.sh", "tshark")
		tshark = "tshark"
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "ctprobe")
	run(t, repoRoot(t), nil, "go", "build", "-o", bin, "./cmd/ctprobe")
	capture := filepath.Join(out, files(scenario)+".all.ctp")
	report := run(t, tmp, nil, bin, "report", "-r", capture, "-o", "json")
	pcap := filepath.Join(tmp, "x.pcapng")
	if err := os.WriteFile(pcap, []byte(run(t, tmp, nil, bin, "report", "-r", capture, "-o", "pcapng")), 0o600); err != nil {
		t.Fatal(err)
	}
	fields := run(t, tmp, []string{"HOME=" + tmp}, tshark, "-r", pcap, "-T", "fields", "-E", "separator=|",
		"-e", "dns.qry.name", "-e", "frame.comment")
	packets := strings.Split(strings.TrimSpace(fields), "\n")

	var want int
	names := map[string]int{}
	comments := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(report), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		switch {
		case m["kind"] == "event" && m["point"] == "confirm" && m["result"] == "inserted":
			want += 2
			if dns, ok := m["dns"].(map[string]any); ok && dns["response"] == false && dns["truncated"] == false {
				names[dns["name"].(string)] += 2
			}
		case m["kind"] == "incident":
			race := fmt.Sprintf("race %d", int(m["race"].(float64)))
			for _, role := range []string{"loser", "winner"} {
				side, _ := m[role].(map[string]any)
				if side == nil || side["orig"] == nil {
					continue
				}
				want += 2
				comments[race+" ("+m["race_name"].(string)+"), outcome "+m["outcome"].(string)+", "+role] += 2
				if dns, ok := side["dns"].(map[string]any); ok && dns["response"] == false && dns["truncated"] == false {
					names[dns["name"].(string)] += 2
				}
			}
		}
	}
	if len(packets) != want {
		t.Fatalf("tshark read %d packets, the report makes %d", len(packets), want)
	}
	for _, p := range packets {
		name, comment, _ := strings.Cut(p, "|")
		if name != "" {
			names[name]--
		}
		for c := range comments {
			if strings.Contains(comment, c) {
				comments[c]--
			}
		}
	}
	for n, left := range names {
		if left != 0 {
			t.Errorf("DNS name %q: %d packets more in the report than tshark read", n, left)
		}
	}
	for c, left := range comments {
		if left != 0 {
			t.Errorf("comment %q: %d packets more in the report than tshark read", c, left)
		}
	}
	t.Logf("%s: tshark read %d packets, names and comments as the report", scenario, len(packets))
}
