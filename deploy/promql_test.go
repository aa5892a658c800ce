package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"github.com/ctprobe/ctprobe/metrics"
)

// grafanaVariables are what Grafana substitutes before it sends a query.
var grafanaVariables = strings.NewReplacer("$__rate_interval", "1m", "$__range", "6h", "$instance", ".*")

// checkPromQL parses expr and checks that it reads only ctprobe's metrics,
// and groups and matches only by labels they have (or the target's
// instance and job, or a label a relabeling adds).
func checkPromQL(t *testing.T, where, expr string) {
	t.Helper()
	e, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaVariables.Replace(expr))
	if err != nil {
		t.Errorf("%s: %q: %v", where, expr, err)
		return
	}
	labels := map[string]bool{"instance": true, "job": true, "node": true}
	names := map[string]bool{}
	for _, f := range metrics.Families {
		names[f.Name] = true
		for _, l := range append(f.Labels, "namespace", "pod") {
			labels[l] = true
		}
	}
	read := 0
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			read++
			if !names[n.Name] {
				t.Errorf("%s: %q reads %q, which ctprobe does not export", where, expr, n.Name)
			}
			for _, m := range n.LabelMatchers {
				if m.Name != "__name__" && !labels[m.Name] {
					t.Errorf("%s: %q matches label %q, which no ctprobe metric has", where, expr, m.Name)
				}
			}
		case *parser.AggregateExpr:
			for _, l := range n.Grouping {
				if !labels[l] {
					t.Errorf("%s: %q groups by %q, which no ctprobe metric has", where, expr, l)
				}
			}
		}
		return nil
	})
	if read == 0 {
		t.Errorf("%s: %q reads no metric", where, expr)
	}
}

// The dashboard is Grafana JSON with the race, DNS-lost and completeness
// panels, and each of its queries reads only what ctprobe exports.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("grafana/ctprobe-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	var titles []string
	for _, p := range d.Panels {
		titles = append(titles, p.Title)
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			checkPromQL(t, "panel "+p.Title, tg.Expr)
		}
	}
	for _, want := range []string{"races", "DNS queries lost", "Completeness"} {
		if !slices.ContainsFunc(titles, func(s string) bool { return strings.Contains(s, want) }) {
			t.Errorf("no panel about %q among %q", want, titles)
		}
	}
	for _, v := range d.Templating.List {
		if q, ok := v.Query.(map[string]any); ok {
			checkPromQL(t, "variable "+v.Name, strings.TrimSuffix(strings.TrimPrefix(q["query"].(string), "label_values("), ", instance)"))
		}
	}
}

// The alerting rules load in Prometheus (promtool check rules) and read
// only what ctprobe exports.
func TestAlertRules(t *testing.T) {
	const path = "prometheus/ctprobe-rules.yaml"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `json:"alert"`
				Expr  string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	var alerts []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			checkPromQL(t, "alert "+r.Alert, r.Expr)
		}
	}
	if !slices.Contains(alerts, "CtprobeDNSQueriesLost") {
		t.Errorf("alerts %v: want CtprobeDNSQueriesLost", alerts)
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed: scripts/deps.sh prometheus (make test installs it)")
	}
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
}

// The PromQL examples of docs/metrics.md parse and read only what ctprobe
// exports.
func TestDocsPromQL(t *testing.T) {
	b, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(b), "```promql\n")[1:]
	if len(blocks) < 3 {
		t.Fatalf("%d PromQL examples in docs/metrics.md, want the DNS-lost one and more", len(blocks))
	}
	for _, blk := range blocks {
		expr, _, _ := strings.Cut(blk, "```")
		checkPromQL(t, "docs/metrics.md", expr)
	}
}
