package metrics

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// docs/metrics.md has a row for every metric, with its labels, and names
// no metric the exporter does not have.
func TestEveryMetricDocumented(t *testing.T) {
	b, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if m := regexp.MustCompile("^\\| `(ctprobe_[a-z_]+)` \\|").FindStringSubmatch(line); m != nil {
			rows[m[1]] = line
		}
	}
	names := map[string]bool{}
	for _, f := range Families {
		names[f.Name] = true
		row, ok := rows[f.Name]
		if !ok {
			t.Errorf("docs/metrics.md has no row for %s", f.Name)
			continue
		}
		cells := strings.Split(row, "|")
		for _, l := range f.Labels {
			if !strings.Contains(cells[3], "`"+l+"`") {
				t.Errorf("docs/metrics.md: %s's labels %q lack %s", f.Name, cells[3], l)
			}
		}
	}
	for name := range rows {
		if !names[name] {
			t.Errorf("docs/metrics.md documents %s, which the exporter does not have", name)
		}
	}
}
