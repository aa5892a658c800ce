package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ctprobe/ctprobe/metrics"
	"github.com/ctprobe/ctprobe/tracer/dnsmsg"
	"github.com/ctprobe/ctprobe/tracer/kstat"
)

// promSample is one series of a Prometheus instant query's answer
// (promtool query instant -o json).
type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// promQuery reads an answer the guest saved: each series' value by the
// values of the labels named.
func promQuery(t *testing.T, path string, labels ...string) map[string]float64 {
	t.Helper()
	var samples []promSample
	readJSON(t, path, &samples)
	out := map[string]float64{}
	for _, s := range samples {
		var key []string
		for _, l := range labels {
			key = append(key, s.Metric[l])
		}
		str, _ := s.Value[1].(string)
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			t.Fatalf("%s: value %v: %v", path, s.Value, err)
		}
		out[strings.Join(key, "/")] = v
	}
	return out
}

// ctprobe as an agent (e2e/guest-metrics.sh) on the default kernel, scraped
// every second by a real Prometheus server while ctlab provoked races: at
// the first scrape after the labs at which every record the probes sent had
// been read, Prometheus's ctprobe_incidents_total per netns equals the
// kernel's clash_resolve + insert_failed there, and
// ctprobe_conntrack_stat_total equals /proc/net/stat/nf_conntrack; the
// dropped DNS queries are the live output's; promtool accepts the page;
// the rotated capture files each replay, and their incidents are the live
// run's.
func TestVMMetrics(t *testing.T) {
	// Nothing here depends on the kernel series: it runs on the default
	// kernel (make e2e) alone, to keep CI short.
	if os.Getenv("KERNEL_SERIES") != "" || os.Getenv("FLAVOUR") != "" && os.Getenv("FLAVOUR") != "cloud" {
		t.Skip("runs on the default kernel (make e2e)")
	}
	kernelDir(t, repoRoot(t)) // skips without CTPROBE_E2E
	run(t, repoRoot(t), nil, "scripts/deps.sh", "prometheus", "curl")
	out := bootGuestWith(t, guestImage{script: "e2e/guest-metrics.sh", suffix: "metrics", initramfs: []string{"--prog", "prometheus", "--prog", "promtool", "--prog", "curl"}})
	p := func(name string) string { return filepath.Join(out, name) }

	t.Run("bad input", func(t *testing.T) {
		for name, want := range map[string]string{
			"rodir": "ctprobe: -w /ro/ctprobe.ctp: the capture directory /ro is not writable: read-only file system",
			"busy":  "ctprobe: --metrics: listen on 127.0.0.1:9965: bind: address already in use: stop what listens there or choose another address",
		} {
			if rc := readFile(t, p(name+".rc")); rc != "1" {
				t.Errorf("%s: exit %s, want 1", name, rc)
			}
			if got := readFile(t, p(name+".err")); got != want {
				t.Errorf("%s: %q, want %q", name, got, want)
			}
		}
	})

	if rc := readFile(t, p("agent.rc")); rc != "0" {
		t.Fatalf("the agent exited %s: %s", rc, readFile(t, p("agent.log")))
	}
	t.Logf("the agent's resources (docs/deploy.md, Resources):\n%s", readFile(t, p("agent.mem")))
	t.Run("log", func(t *testing.T) {
		logText := readFile(t, p("agent.log"))
		for _, line := range strings.Split(logText, "\n") {
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["level"] == nil || rec["msg"] == nil {
				t.Errorf("not a JSON log record: %q", line)
			}
		}
		if !strings.Contains(logText, `"msg":"serving metrics"`) {
			t.Errorf("the log does not say where metrics are served:\n%s", logText)
		}
	})
	t.Run("healthz", func(t *testing.T) {
		if code, body := readFile(t, p("healthz.code")), readFile(t, p("healthz.body")); code != "200" || body != "ok" {
			t.Errorf("/healthz: %s %q, want 200 \"ok\"", code, body)
		}
	})
	t.Run("promtool check metrics", func(t *testing.T) {
		if rc := readFile(t, p("promtool.rc")); rc != "0" {
			t.Errorf("promtool check metrics: exit %s: %s", rc, readFile(t, p("promtool.out")))
		}
		page := readFile(t, p("metrics.txt"))
		for _, f := range metrics.Families {
			if !strings.Contains(page, "# TYPE "+f.Name+" ") {
				t.Errorf("%s is not on the scraped page", f.Name)
			}
		}
	})

	if readFile(t, p("prom.ts")) == "" {
		t.Fatalf("no scrape after the labs read every record the probes sent (unread: %s; lost: %s)",
			readFile(t, p("prom.unread.json")), readFile(t, p("prom.lost.json")))
	}
	for _, sc := range []string{"endpoints-2", "snat-one-port"} {
		if rc := readFile(t, p("lab."+sc+".rc")); rc != "0" {
			t.Fatalf("ctlab run --scenario %s: exit %s: %s", sc, rc, readFile(t, p("lab."+sc+".err")))
		}
	}
	live := liveIncidents(t, p("agent.jsonl"))

	t.Run("incidents and counters per netns", func(t *testing.T) {
		incidents := promQuery(t, p("prom.incidents.json"), "netns")
		stats := promQuery(t, p("prom.conntrack.json"), "netns", "stat")
		kernel := labCounters(t, out)
		var clashes float64
		for ino, values := range kernel {
			ns := strconv.FormatUint(ino, 10)
			want := float64(values["clash_resolve"] + values["insert_failed"])
			clashes += want
			if incidents[ns] != want {
				t.Errorf("netns %s: sum(ctprobe_incidents_total) %v, the kernel's clash_resolve + insert_failed %v (%v)", ns, incidents[ns], want, values)
			}
			for stat, v := range values {
				if got, ok := stats[ns+"/"+stat]; !ok || got != float64(v) {
					t.Errorf("netns %s: ctprobe_conntrack_stat_total{stat=%q} %v (present %v), /proc/net/stat/nf_conntrack %d", ns, stat, got, ok, v)
				}
			}
		}
		var all float64
		for ns, n := range incidents {
			all += n
			if ino, _ := strconv.ParseUint(ns, 10, 64); kernel[ino] == nil {
				t.Errorf("%v incidents in netns %s, which no lab made", n, ns)
			}
		}
		if clashes < 20 || all != float64(live.total) {
			t.Errorf("%v incidents in Prometheus, %d in the live output, %v clashes counted by the kernel: want the same, at least 20", all, live.total, clashes)
		}
		for kind, n := range promQuery(t, p("prom.lost.json"), "kind") {
			if n != 0 {
				t.Errorf("ctprobe_records_lost_total{kind=%q} = %v", kind, n)
			}
		}
	})
	t.Run("dns queries lost", func(t *testing.T) {
		got := promQuery(t, p("prom.dns.json"), "netns", "qtype")
		if !maps.Equal(got, live.dnsLost) || len(got) == 0 {
			t.Errorf("ctprobe_dns_queries_lost_total %v, the live output's dropped queries %v: want the same, not none", got, live.dnsLost)
		}
	})
	t.Run("probe and build info", func(t *testing.T) {
		probes := promQuery(t, p("prom.probe.json"), "point", "function")
		if probes["clash/nf_ct_resolve_clash"] != 1 {
			t.Errorf("ctprobe_probe_info: %v, want the clash point on nf_ct_resolve_clash", probes)
		}
		if build := promQuery(t, p("prom.build.json"), "version"); len(build) != 1 {
			t.Errorf("ctprobe_build_info: %v", build)
		}
	})
	t.Run("rotated captures", func(t *testing.T) {
		n, err := strconv.Atoi(readFile(t, p("rot.files")))
		if err != nil || n < 3 {
			t.Fatalf("%s capture files (%v): want several\n%s", readFile(t, p("rot.files")), err, readFile(t, p("rot.ls")))
		}
		replayed := map[string]int{}
		total := 0
		for i := 1; i <= n; i++ {
			name := fmt.Sprintf("rot.%d", i)
			if rc := readFile(t, p(name+".rc")); rc != "0" {
				t.Errorf("ctprobe report of file %d: exit %s: %s", i, rc, readFile(t, p(name+".err")))
			}
			if e := readFile(t, p(name+".err")); e != "" {
				t.Errorf("ctprobe report of file %d: %s", i, e)
			}
			inc := liveIncidents(t, p(name+".jsonl"))
			total += inc.total
			for k, v := range inc.byRace {
				replayed[k] += v
			}
		}
		if total != live.total || !maps.Equal(replayed, live.byRace) {
			t.Errorf("the %d files replay %d incidents %v, the live run printed %d %v", n, total, replayed, live.total, live.byRace)
		}
	})
}

// incidentCounts are the incidents of a -o json stream.
type incidentCounts struct {
	total   int
	byRace  map[string]int     // "race/outcome"
	dnsLost map[string]float64 // "netns/qtype": dropped losers' queries
}

func liveIncidents(t *testing.T, path string) incidentCounts {
	t.Helper()
	_, lines := jsonLines(t, path)
	c := incidentCounts{byRace: map[string]int{}, dnsLost: map[string]float64{}}
	for _, l := range lines {
		if l["kind"] != "incident" {
			continue
		}
		c.total++
		c.byRace[fmt.Sprintf("%v/%v", l["race"], l["outcome"])]++
		loser, _ := l["loser"].(map[string]any)
		dns, _ := loser["dns"].(map[string]any)
		if l["outcome"] != "dropped" || dns == nil || dns["response"] == true {
			continue
		}
		qtype := "other"
		if n, ok := dns["qtype"].(float64); ok {
			if m, known := dnsmsg.TypeMnemonic(uint16(n)); known {
				qtype = m
			}
		}
		c.dnsLost[fmt.Sprintf("%.0f/%s", l["netns"], qtype)]++
	}
	return c
}

// labCounters are the race counters of each lab netns as the guest read
// them after the labs (kstat.INODE), checked against a second reading at
// the end (kstat.end.INODE): nothing moved them in between.
func labCounters(t *testing.T, out string) map[uint64]map[string]uint64 {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(out, "kstat.[0-9]*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no kstat files in %s (%v)", out, err)
	}
	read := func(path string) map[string]uint64 {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		c, err := kstat.Parse(b)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return c.Values()
	}
	out2 := map[uint64]map[string]uint64{}
	for _, f := range files {
		ino, err := strconv.ParseUint(strings.TrimPrefix(filepath.Base(f), "kstat."), 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		v := read(f)
		if end := read(filepath.Join(out, "kstat.end."+strconv.FormatUint(ino, 10))); !maps.Equal(v, end) {
			t.Errorf("netns %d's counters moved after the labs: %v, then %v", ino, v, end)
		}
		out2[ino] = v
	}
	return out2
}
