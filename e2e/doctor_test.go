package e2e

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ctprobe/ctprobe/lab"
)

type doctorReport struct {
	Drops      bool `json:"drops"`
	Namespaces []struct {
		Name     string `json:"name"`
		Findings []struct {
			ID       string `json:"id"`
			Severity string `json:"severity"`
			Races    []struct {
				Race    int    `json:"race"`
				Outcome string `json:"outcome"`
			} `json:"races"`
		} `json:"findings"`
		Unread []string `json:"unread"`
	} `json:"namespaces"`
}

// checkDoctor holds ctprobe doctor's prediction for a scenario, made on
// the scenario's topology before any lookup (doctor_judge in e2e/guest.sh),
// against what the scenario's trace in mode then saw: every race the trace
// classified was predicted by a finding, with the outcome the trace saw,
// and doctor says drops exactly where the kernel's counters show them.
func checkDoctor(t *testing.T, out, scenario string, mode traceMode) {
	p := func(suffix string) string { return filepath.Join(out, files(scenario)+suffix) }
	var twin lab.Stats
	readJSON(t, p(".doctor.twin.json"), &twin)
	prefix := ""
	for _, ns := range twin.Netns {
		if ns.Role == "node" {
			prefix = strings.TrimSuffix(ns.Name, "node")
		}
	}
	rc := readFile(t, p(".doctor.rc"))
	if rc != "0" && rc != "3" {
		t.Fatalf("ctprobe doctor exit %s: %s", rc, readFile(t, p(".doctor.err")))
	}
	var rep doctorReport
	readJSON(t, p(".doctor.json"), &rep)
	// What the findings in the judged topology predict, race by race.
	predicted := map[int][]string{}
	var found []string
	twinDrops := false
	for _, ns := range rep.Namespaces {
		if !strings.HasPrefix(ns.Name, prefix) {
			continue
		}
		if len(ns.Unread) > 0 {
			t.Errorf("netns %s not read: %v", ns.Name, ns.Unread)
		}
		for _, f := range ns.Findings {
			found = append(found, fmt.Sprintf("%s:%s", f.ID, f.Severity))
			twinDrops = twinDrops || f.Severity == "drops"
			for _, r := range f.Races {
				if !slices.Contains(predicted[r.Race], r.Outcome) {
					predicted[r.Race] = append(predicted[r.Race], r.Outcome)
				}
			}
		}
	}
	t.Logf("doctor (exit %s) on %s*: %v; predicts %v", rc, prefix, found, predicted)

	_, lines := jsonLines(t, p(mode.suffix+".trace.jsonl"))
	seen := map[string]int{}
	for _, m := range lines {
		if m["kind"] != "incident" {
			continue
		}
		race, _ := m["race"].(float64)
		outcome, _ := m["outcome"].(string)
		seen[fmt.Sprintf("race %d %s", int(race), outcome)]++
		if race == 0 {
			continue // unclassified: the evidence was incomplete
		}
		if !slices.Contains(predicted[int(race)], outcome) {
			t.Errorf("the trace saw race %d end %s; doctor predicted %v for it", int(race), outcome, predicted[int(race)])
		}
	}
	t.Logf("the trace saw %v", seen)
	if len(seen) == 0 {
		t.Fatal("the trace saw no incident: nothing to compare")
	}
	var st lab.Stats
	readJSON(t, p(".lab.json"), &st)
	var drops uint64
	for _, ns := range st.Netns {
		drops += ns.Delta.Drop
	}
	if (rc == "3") != rep.Drops {
		t.Errorf("doctor exit %s, but its report says drops: %v", rc, rep.Drops)
	}
	if twinDrops != (drops > 0) {
		t.Errorf("doctor said drops: %v for the topology, but the kernel counted %d drops in the traced run", twinDrops, drops)
	}
}
