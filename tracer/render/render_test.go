package render

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/incident"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ from the current output (review the diff before committing)")

// golden compares got with testdata/name byte for byte.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (create it with: go test ./tracer/render -update)", err)
	}
	if bytes.Equal(got, want) {
		return
	}
	gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < max(len(gl), len(wl)); i++ {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			t.Fatalf("%s differs from the output at line %d (run with -update if the change is intended):\nwant: %q\ngot:  %q", path, i+1, w, g)
		}
	}
	t.Fatalf("%s differs from the output", path)
}

func renderAll(t *testing.T, r Renderer, f func(Renderer) error) {
	t.Helper()
	if err := f(r); err != nil {
		t.Fatal(err)
	}
}

func eventsText(color bool) []byte {
	var buf bytes.Buffer
	r := NewText(&buf, testOptions(color))
	for _, ev := range testEvents() {
		if err := r.Event(&ev); err != nil {
			panic(err)
		}
	}
	return buf.Bytes()
}

func eventsJSON() []byte {
	var buf bytes.Buffer
	r := NewJSON(&buf, testOptions(false))
	for _, ev := range testEvents() {
		if err := r.Event(&ev); err != nil {
			panic(err)
		}
	}
	return buf.Bytes()
}

func incidentsText(color bool) []byte {
	var buf bytes.Buffer
	r := NewText(&buf, testOptions(color))
	for _, inc := range testIncidents() {
		if err := r.Incident(&inc); err != nil {
			panic(err)
		}
	}
	return buf.Bytes()
}

func incidentsJSON() []byte {
	var buf bytes.Buffer
	r := NewJSON(&buf, testOptions(false))
	for _, inc := range testIncidents() {
		if err := r.Incident(&inc); err != nil {
			panic(err)
		}
	}
	return buf.Bytes()
}

// summaries are the summary cases: a 6.x kernel with one netns unread,
// a pre-5.10 kernel without clash_resolve, and an empty final one.
func summaries() []*Summary {
	s1 := testSummary()
	s1.Netns = append(s1.Netns, NetnsSummary{Netns: 4026532999, Incidents: 0}) // seen, not read
	slices.SortFunc(s1.Netns, func(a, b NetnsSummary) int { return int(int64(a.Netns) - int64(b.Netns)) })

	t := NewTally(time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC))
	for _, inc := range testIncidents()[:2] {
		t.Add(&inc)
	}
	s2 := t.Summary(testNow, []NetnsCounters{{Netns: tNetns, Name: "ctlab", Delta: map[string]uint64{"insert_failed": 2, "drop": 1}}}, false)

	s3 := NewTally(time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)).Summary(testNow, nil, true)
	return []*Summary{s1, s2, s3}
}

func summariesText(color bool) []byte {
	var buf bytes.Buffer
	r := NewText(&buf, testOptions(color))
	for _, s := range summaries() {
		if err := r.Summary(s); err != nil {
			panic(err)
		}
	}
	return buf.Bytes()
}

func summariesJSON() []byte {
	var buf bytes.Buffer
	r := NewJSON(&buf, testOptions(false))
	for _, s := range summaries() {
		if err := r.Summary(s); err != nil {
			panic(err)
		}
	}
	return buf.Bytes()
}

var testPlan = []PlanEntry{
	{Point: "ct_in", Function: "nf_conntrack_in", Mode: "fexit", Status: "attached"},
	{Point: "nat", Function: "nf_nat_setup_info", Mode: "fexit", Status: "attached"},
	{Point: "clash", Function: "nf_ct_resolve_clash", Mode: "fentry", Status: "skipped", Reason: "not a symbol before 5.6"},
	{Point: "confirm", Function: "__nf_conntrack_confirm", Mode: "kretprobe", Status: "attached"},
}

func miscOut(r Renderer) error {
	return errors.Join(
		r.Plan(testPlan),
		r.Warning(`netns 4026532999: cannot read /proc/net/stat/nf_conntrack: permission denied`),
		r.Lost(Lost{Source: "ringbuf", CPU: 1, Count: 12}),
		r.Lost(Lost{Source: "kretprobe-missed", CPU: -1, Count: 1}),
	)
}

func miscText(color bool) []byte {
	var buf bytes.Buffer
	if err := miscOut(NewText(&buf, testOptions(color))); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

func miscJSON() []byte {
	var buf bytes.Buffer
	if err := miscOut(NewJSON(&buf, testOptions(false))); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

func TestGolden(t *testing.T) {
	for name, out := range map[string]func() []byte{
		"events.txt":      func() []byte { return eventsText(false) },
		"events.jsonl":    eventsJSON,
		"incidents.txt":   func() []byte { return incidentsText(false) },
		"incidents.jsonl": incidentsJSON,
		"summary.txt":     func() []byte { return summariesText(false) },
		"summary.jsonl":   summariesJSON,
		"misc.txt":        func() []byte { return miscText(false) },
		"misc.jsonl":      miscJSON,
	} {
		t.Run(name, func(t *testing.T) { golden(t, name, out()) })
	}
}

// Every event line has the same columns up to the kind-specific part.
func TestEventColumns(t *testing.T) {
	lines := strings.Split(strings.TrimSuffix(string(eventsText(false)), "\n"), "\n")
	if len(lines) != len(testEvents()) {
		t.Fatalf("%d lines for %d events", len(lines), len(testEvents()))
	}
	const kindCol = len("12:00:03.123456 ") + wCPU + 1 + wTask + 1 + wNetns + 1
	for _, l := range lines {
		if got := strings.Index(l, " ns:") + 1; got != kindCol-wNetns-1 {
			t.Errorf("ns column at %d, want %d: %q", got, kindCol-wNetns-1, l)
		}
		kind := strings.Fields(l[kindCol:])[0]
		if !slices.Contains([]string{"ct_in", "nat", "clash", "confirm"}, kind) {
			t.Errorf("kind column at %d holds %q: %q", kindCol, kind, l)
		}
		if l[kindCol-1] != ' ' || l[kindCol-2] == ' ' && !strings.HasPrefix(l[kindCol-wNetns-1:], "ns:") {
			t.Errorf("misaligned: %q", l)
		}
	}
	// ct_in and nat lines align the protocol column too.
	const protoCol = kindCol + wKind + 1 + wHook + 1
	for _, l := range lines {
		if k := strings.Fields(l[kindCol:])[0]; k == "ct_in" || k == "nat" {
			proto := strings.Fields(l[protoCol:])[0]
			if _, ok := event.ProtoNumber(proto); !ok {
				t.Errorf("protocol column holds %q: %q", proto, l)
			}
		}
	}
}

var ansiRE = regexp.MustCompile("\x1b\\[[0-9;]*m")

func TestColor(t *testing.T) {
	cases := []struct {
		name        string
		plain, tint func(bool) []byte
		want        []string // colour sequences that must appear
	}{
		{"events", eventsText, eventsText, []string{ansiRed + "DROP", ansiYellow + "NAT_CLASH", ansiGreen + "merged-into=", ansiYellow + "clash"}},
		{"incidents", incidentsText, incidentsText, []string{ansiRed + "dropped", ansiYellow + "nat-clash", ansiGreen + "merged", ansiBold + "race 3", ansiCyan + "W", ansiMagenta + "L"}},
		{"summary", summariesText, summariesText, []string{ansiBold + "=== ctprobe summary", ansiRed + "1", ansiYellow + "0" + ansiReset + " of 1"}},
		{"misc", miscText, miscText, []string{ansiRed + "lost", ansiYellow + "warning:", ansiGreen + "attached"}},
	}
	for _, c := range cases {
		plain, tinted := c.plain(false), c.tint(true)
		if bytes.ContainsRune(plain, 0x1b) {
			t.Errorf("%s: escape sequence with colour off", c.name)
		}
		if !bytes.Equal(ansiRE.ReplaceAll(tinted, nil), plain) {
			t.Errorf("%s: coloured output minus its escapes differs from the plain output", c.name)
		}
		for _, w := range c.want {
			if !bytes.Contains(tinted, []byte(w)) {
				t.Errorf("%s: no %q in coloured output", c.name, w)
			}
		}
	}
	var buf bytes.Buffer
	if err := miscOut(NewJSON(&buf, testOptions(true))); err != nil {
		t.Fatal(err)
	}
	for _, inc := range testIncidents() {
		_ = NewJSON(&buf, testOptions(true)).Incident(&inc)
	}
	if bytes.ContainsRune(buf.Bytes(), 0x1b) {
		t.Error("JSON output has colour")
	}
}

// JSON: every line parses, carries schema and kind, and the documented keys
// have the documented types.

func decodeLines(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	for i, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(l))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("line %d does not parse: %v: %s", i+1, err, l)
		}
		if s, ok := m["schema"].(json.Number); !ok || s.String() != "1" {
			t.Fatalf("line %d: schema %v, want 1", i+1, m["schema"])
		}
		out = append(out, m)
	}
	return out
}

type typ int

const (
	tString typ = iota
	tNumber
	tInt
	tBool
	tObject
	tArray
	tNull
)

func (k typ) String() string {
	return [...]string{"string", "number", "integer", "bool", "object", "array", "null"}[k]
}

func typeOf(v any) typ {
	switch x := v.(type) {
	case string:
		return tString
	case json.Number:
		if _, err := x.Int64(); err == nil {
			return tInt
		}
		if _, err := x.Float64(); err == nil && !strings.ContainsAny(x.String(), ".eE") {
			return tInt // beyond int64, still an integer
		}
		return tNumber
	case bool:
		return tBool
	case map[string]any:
		return tObject
	case []any:
		return tArray
	case nil:
		return tNull
	}
	panic(fmt.Sprintf("unexpected %T", v))
}

// want checks m[key] against the allowed types (tNumber accepts integers).
func want(t *testing.T, where string, m map[string]any, key string, types ...typ) any {
	t.Helper()
	v, ok := m[key]
	if !ok {
		t.Errorf("%s: no %q in %v", where, key, m)
		return nil
	}
	got := typeOf(v)
	for _, w := range types {
		if got == w || (w == tNumber && got == tInt) {
			return v
		}
	}
	t.Errorf("%s: %q is %s (%v), want %v", where, key, got, v, types)
	return v
}

func wantTuple(t *testing.T, where string, v any) {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		if v != nil {
			t.Errorf("%s: tuple is %T", where, v)
		}
		return
	}
	want(t, where, m, "proto", tString)
	for _, k := range []string{"src", "dst"} {
		if s, ok := want(t, where, m, k, tString).(string); ok && !strings.Contains(s, ":") {
			t.Errorf("%s: %s %q is not ip:port", where, k, s)
		}
	}
}

func wantHex(t *testing.T, where string, m map[string]any, key string) {
	t.Helper()
	if s, ok := want(t, where, m, key, tString).(string); ok && !regexp.MustCompile(`^0x[0-9a-f]+$`).MatchString(s) {
		t.Errorf("%s: %s %q is not a hex string", where, key, s)
	}
}

func wantTime(t *testing.T, where string, m map[string]any, key string) {
	t.Helper()
	if s, ok := want(t, where, m, key, tString).(string); ok {
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			t.Errorf("%s: %s: %v", where, key, err)
		}
	}
}

func TestJSONEvents(t *testing.T) {
	evs := testEvents()
	lines := decodeLines(t, eventsJSON())
	if len(lines) != len(evs) {
		t.Fatalf("%d lines for %d events", len(lines), len(evs))
	}
	for i, m := range lines {
		w := fmt.Sprintf("event %d", i)
		if m["kind"] != "event" {
			t.Errorf("%s: kind %v", w, m["kind"])
		}
		wantTime(t, w, m, "time")
		for _, k := range []string{"ktime_ns", "cpu", "pid", "tid", "cgroup", "netns", "zone", "mark", "status"} {
			want(t, w, m, k, tInt)
		}
		want(t, w, m, "comm", tString)
		wantHex(t, w, m, "ct")
		wantHex(t, w, m, "skb")
		want(t, w, m, "status_names", tArray)
		want(t, w, m, "flags", tArray)
		want(t, w, m, "softirq", tBool)
		want(t, w, m, "history", tBool)
		if s, ok := want(t, w, m, "socket", tObject, tNull).(map[string]any); ok {
			for _, k := range []string{"cookie", "inode", "port", "family", "state"} {
				want(t, w+" socket", s, k, tInt)
			}
		}
		wantTuple(t, w+" orig", want(t, w, m, "orig", tObject))
		wantTuple(t, w+" reply", want(t, w, m, "reply", tObject))

		ev := evs[i]
		if got, _ := m["point"].(string); got != ev.Kind.String() {
			t.Errorf("%s: point %q, want %q", w, got, ev.Kind)
		}
		if got := m["ktime_ns"].(json.Number).String(); got != fmt.Sprint(ev.Time) {
			t.Errorf("%s: ktime_ns %s, want %d", w, got, ev.Time)
		}
		tm, _ := time.Parse(time.RFC3339Nano, m["time"].(string))
		if !tm.Equal(testClock.Time(ev.Time)) {
			t.Errorf("%s: time %v, want %v", w, tm, testClock.Time(ev.Time))
		}
		switch ev.Kind {
		case event.CTIn:
			want(t, w, m, "hook", tString)
			want(t, w, m, "ctinfo", tString)
			want(t, w, m, "verdict", tString)
			want(t, w, m, "new", tBool)
			if n := want(t, w, m, "payload_len", tInt); n.(json.Number).String() != "0" {
				want(t, w, m, "payload_hex", tString)
				d := want(t, w, m, "dns", tObject).(map[string]any)
				want(t, w+" dns", d, "id", tInt)
				want(t, w+" dns", d, "type", tString)
				want(t, w+" dns", d, "qtype", tInt)
				want(t, w+" dns", d, "name", tString)
				want(t, w+" dns", d, "response", tBool)
				want(t, w+" dns", d, "truncated", tBool)
			}
		case event.NAT:
			want(t, w, m, "manip", tString)
			want(t, w, m, "gut", tBool)
			want(t, w, m, "changed", tBool)
			wantTuple(t, w+" before", want(t, w, m, "before", tObject))
			r := want(t, w, m, "range", tObject).(map[string]any)
			want(t, w+" range", r, "min_addr", tString, tNull)
			want(t, w+" range", r, "max_addr", tString, tNull)
			want(t, w+" range", r, "min_port", tInt)
			want(t, w+" range", r, "max_port", tInt)
			want(t, w+" range", r, "flags", tInt)
			want(t, w+" range", r, "flag_names", tArray)
		case event.Clash:
			wantHex(t, w, m, "other_ct")
			want(t, w, m, "dir", tString)
		case event.Confirm:
			want(t, w, m, "verdict", tString)
			want(t, w, m, "ctinfo", tString)
			want(t, w, m, "result", tString)
			wantHex(t, w, m, "other_ct")
		}
	}
	// Values that tell the cases apart.
	if got := lines[0]["dns"].(map[string]any)["name"]; got != "lab.example" {
		t.Errorf("dns name %v", got)
	}
	results := []string{}
	for _, m := range lines {
		if r, ok := m["result"].(string); ok {
			results = append(results, r)
		}
	}
	if !slices.Equal(results, []string{"inserted", "merged", "nat_clash", "drop"}) {
		t.Errorf("confirm results %v", results)
	}
	if got := lines[2]["orig"].(map[string]any)["src"]; got != "[fd00::2]:443" {
		t.Errorf("IPv6 endpoint %v", got)
	}
}

func TestJSONIncidents(t *testing.T) {
	incs := testIncidents()
	lines := decodeLines(t, incidentsJSON())
	if len(lines) != len(incs) {
		t.Fatalf("%d lines for %d incidents", len(lines), len(incs))
	}
	for i, m := range lines {
		w := fmt.Sprintf("incident %d", i)
		if m["kind"] != "incident" {
			t.Errorf("%s: kind %v", w, m["kind"])
		}
		wantTime(t, w, m, "time")
		want(t, w, m, "ktime_ns", tInt)
		race := want(t, w, m, "race", tInt)
		if race.(json.Number).String() != fmt.Sprint(int(incs[i].Race)) {
			t.Errorf("%s: race %v, want %d", w, race, incs[i].Race)
		}
		if m["race_name"] != RaceName(incs[i].Race) {
			t.Errorf("%s: race_name %v", w, m["race_name"])
		}
		if m["outcome"] != string(incs[i].Outcome) {
			t.Errorf("%s: outcome %v", w, m["outcome"])
		}
		want(t, w, m, "reason", tString)
		want(t, w, m, "window_us", tNumber, tNull)
		want(t, w, m, "clash_dir", tString, tNull)
		want(t, w, m, "netns", tInt)
		for _, side := range []string{"winner", "loser"} {
			types := []typ{tObject}
			if side == "winner" {
				types = append(types, tNull)
			}
			p, ok := want(t, w, m, side, types...).(map[string]any)
			if !ok {
				continue
			}
			ws := w + " " + side
			wantHex(t, ws, p, "ct")
			want(t, ws, p, "comm", tString)
			for _, k := range []string{"pid", "tid", "cpu", "netns", "zone"} {
				want(t, ws, p, k, tInt)
			}
			if s, ok := want(t, ws, p, "socket", tObject, tNull).(map[string]any); ok {
				for _, k := range []string{"cookie", "inode", "port"} {
					want(t, ws+" socket", s, k, tInt)
				}
			}
			for _, k := range []string{"orig", "reply", "reply_before_nat"} {
				wantTuple(t, ws+" "+k, want(t, ws, p, k, tObject))
			}
			want(t, ws, p, "nat_changed", tBool)
			want(t, ws, p, "port_moved", tBool)
			want(t, ws, p, "born_ktime_ns", tInt, tNull)
			want(t, ws, p, "task", tBool)
			if d, ok := want(t, ws, p, "dns", tObject, tNull).(map[string]any); ok {
				want(t, ws+" dns", d, "id", tInt)
				want(t, ws+" dns", d, "type", tString, tNull)
				want(t, ws+" dns", d, "qtype", tInt, tNull)
				want(t, ws+" dns", d, "name", tString)
				want(t, ws+" dns", d, "response", tBool)
				want(t, ws+" dns", d, "truncated", tBool)
			}
			tl := want(t, ws, p, "timeline", tArray).([]any)
			// The default mode sees only the loser's clash and confirm.
			defaultMode := m["loser"].(map[string]any)["born_ktime_ns"] == nil
			if len(tl) == 0 && !(side == "winner" && defaultMode) {
				t.Errorf("%s: empty timeline", ws)
			}
			for j, s := range tl {
				st := s.(map[string]any)
				wj := fmt.Sprintf("%s timeline[%d]", ws, j)
				want(t, wj, st, "stage", tString)
				want(t, wj, st, "offset_us", tNumber)
				want(t, wj, st, "ktime_ns", tInt)
				want(t, wj, st, "cpu", tInt)
				switch st["stage"] {
				case "ct_in":
					want(t, wj, st, "hook", tString)
					wantTuple(t, wj, want(t, wj, st, "orig", tObject))
					wantTuple(t, wj, want(t, wj, st, "reply", tObject))
				case "clash":
					if side == "loser" && m["winner"] != nil {
						wantTuple(t, wj, want(t, wj, st, "winner_orig", tObject))
						wantTuple(t, wj, want(t, wj, st, "winner_reply", tObject))
					}
				case "nat":
					want(t, wj, st, "manip", tString)
					want(t, wj, st, "changed", tBool)
					wantTuple(t, wj, want(t, wj, st, "before", tObject))
					wantTuple(t, wj, want(t, wj, st, "after", tObject))
				case "confirm":
					want(t, wj, st, "verdict", tString)
					wantTuple(t, wj, want(t, wj, st, "orig", tObject))
					wantTuple(t, wj, want(t, wj, st, "reply", tObject))
				}
			}
		}
	}
	// The race 3 incident, in detail.
	r3 := lines[2]
	if r3["window_us"].(json.Number).String() != "1.5" {
		t.Errorf("window_us %v, want 1.5", r3["window_us"])
	}
	L := r3["loser"].(map[string]any)
	if got := L["reply"].(map[string]any)["src"]; got != "10.244.3.1:53" {
		t.Errorf("loser reply src %v", got)
	}
	if got := L["socket"].(map[string]any)["cookie"].(json.Number).String(); got != "31" {
		t.Errorf("cookie %v", got)
	}
	if got := L["dns"].(map[string]any); got["type"] != "AAAA" || got["id"].(json.Number).String() != "4661" {
		t.Errorf("loser dns %v", got)
	}
	if got := L["timeline"].([]any)[1].(map[string]any)["offset_us"].(json.Number).String(); got != "5" {
		t.Errorf("offset_us of the loser's DNAT %v, want 5", got)
	}
	if lines[6]["winner"] != nil || lines[6]["window_us"] != nil || lines[6]["clash_dir"] != nil {
		t.Errorf("race 0 without a winner: %v", lines[6])
	}
	// The default mode's race 3: the winner's socket, not its task.
	W := lines[5]["winner"].(map[string]any)
	if W["task"] != false || W["socket"] == nil || len(W["timeline"].([]any)) != 0 || lines[5]["window_us"] != nil {
		t.Errorf("default-mode winner %v", W)
	}
}

func TestJSONSummary(t *testing.T) {
	lines := decodeLines(t, summariesJSON())
	if len(lines) != 3 {
		t.Fatalf("%d lines", len(lines))
	}
	for i, m := range lines {
		w := fmt.Sprintf("summary %d", i)
		if m["kind"] != "summary" {
			t.Errorf("%s: kind %v", w, m["kind"])
		}
		want(t, w, m, "final", tBool)
		wantTime(t, w, m, "start")
		wantTime(t, w, m, "end")
		want(t, w, m, "duration_s", tNumber)
		want(t, w, m, "incidents", tInt)
		for _, r := range want(t, w, m, "by_race", tArray).([]any) {
			r := r.(map[string]any)
			want(t, w+" by_race", r, "race", tInt)
			want(t, w+" by_race", r, "race_name", tString)
			want(t, w+" by_race", r, "outcome", tString)
			want(t, w+" by_race", r, "count", tInt)
		}
		for _, r := range want(t, w, m, "by_process", tArray).([]any) {
			r := r.(map[string]any)
			want(t, w+" by_process", r, "comm", tString)
			want(t, w+" by_process", r, "pid", tInt)
			want(t, w+" by_process", r, "count", tInt)
		}
		for _, r := range want(t, w, m, "by_destination", tArray).([]any) {
			r := r.(map[string]any)
			want(t, w+" by_destination", r, "proto", tString)
			want(t, w+" by_destination", r, "dst", tString)
			want(t, w+" by_destination", r, "count", tInt)
		}
		wantCompleteness := func(w string, c map[string]any) {
			want(t, w, c, "has_clash_resolve", tBool)
			if e, ok := want(t, w, c, "clash_resolve", tObject, tNull).(map[string]any); ok {
				want(t, w+" clash_resolve", e, "explained", tInt)
				want(t, w+" clash_resolve", e, "counted", tInt)
			}
			e := want(t, w, c, "insert_failed", tObject).(map[string]any)
			want(t, w+" insert_failed", e, "explained", tInt)
			want(t, w+" insert_failed", e, "counted", tInt)
		}
		for _, n := range want(t, w, m, "netns", tArray).([]any) {
			n := n.(map[string]any)
			wn := w + " netns"
			want(t, wn, n, "netns", tInt)
			want(t, wn, n, "name", tString)
			want(t, wn, n, "counters", tObject, tNull)
			want(t, wn, n, "incidents", tInt)
			want(t, wn, n, "resolved", tInt)
			want(t, wn, n, "dropped", tInt)
			if c, ok := want(t, wn, n, "completeness", tObject, tNull).(map[string]any); ok {
				wantCompleteness(wn+" completeness", c)
			}
		}
		tot := want(t, w, m, "total", tObject).(map[string]any)
		for _, k := range []string{"netns_with_counters", "incidents", "resolved", "dropped", "uncounted"} {
			want(t, w+" total", tot, k, tInt)
		}
		want(t, w+" total", tot, "counters", tObject)
		if c, ok := want(t, w+" total", tot, "completeness", tObject, tNull).(map[string]any); ok {
			wantCompleteness(w+" total completeness", c)
		}
		lost := want(t, w, m, "lost", tObject).(map[string]any)
		want(t, w+" lost", lost, "total", tInt)
		bs := want(t, w+" lost", lost, "by_source", tObject).(map[string]any)
		for _, src := range LostSources {
			want(t, w+" lost by_source", bs, src, tInt)
		}
		for _, mi := range want(t, w, m, "mitigations", tArray).([]any) {
			mi := mi.(map[string]any)
			want(t, w+" mitigation", mi, "race", tInt, tNull)
			want(t, w+" mitigation", mi, "incidents", tInt)
			want(t, w+" mitigation", mi, "dropped", tInt)
			want(t, w+" mitigation", mi, "text", tString)
		}
	}
	tot := lines[0]["total"].(map[string]any)["completeness"].(map[string]any)
	if cr := tot["clash_resolve"].(map[string]any); cr["explained"].(json.Number).String() != "4" || cr["counted"].(json.Number).String() != "4" {
		t.Errorf("total clash_resolve %v", cr)
	}
	if old := lines[1]["total"].(map[string]any)["completeness"].(map[string]any); old["has_clash_resolve"] != false || old["clash_resolve"] != nil {
		t.Errorf("pre-5.10 completeness %v", old)
	}
	if n := len(lines[0]["mitigations"].([]any)); n != 7 {
		t.Errorf("%d mitigations, want 7 (races 0-5 and dropped)", n)
	}
}

func TestJSONMisc(t *testing.T) {
	lines := decodeLines(t, miscJSON())
	kinds := []string{}
	for _, m := range lines {
		kinds = append(kinds, m["kind"].(string))
		wantTime(t, "misc", m, "time")
	}
	if !slices.Equal(kinds, []string{"plan", "warning", "lost", "lost"}) {
		t.Fatalf("kinds %v", kinds)
	}
	for _, p := range lines[0]["points"].([]any) {
		p := p.(map[string]any)
		for _, k := range []string{"point", "function", "mode", "status", "reason"} {
			want(t, "plan point", p, k, tString)
		}
	}
	want(t, "warning", lines[1], "message", tString)
	for _, l := range lines[2:] {
		want(t, "lost", l, "source", tString)
		want(t, "lost", l, "cpu", tInt, tNull)
		want(t, "lost", l, "count", tInt)
	}
	if lines[3]["cpu"] != nil {
		t.Errorf("lost without a CPU: cpu %v", lines[3]["cpu"])
	}
}

// Every key any JSON line emits is documented in docs/json-schema.md.
func TestJSONDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/json-schema.md")
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				keys[k] = true
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	for _, b := range [][]byte{eventsJSON(), incidentsJSON(), summariesJSON(), miscJSON()} {
		for _, m := range decodeLines(t, b) {
			walk(m)
		}
	}
	for k := range keys {
		// As `key`, or as the last part of a path such as `dns.id` or
		// `points[].mode`.
		if !regexp.MustCompile("`(?:[a-z_]+(?:\\[\\])?\\.)*" + regexp.QuoteMeta(k) + "`").Match(doc) {
			t.Errorf("key %q is not documented in docs/json-schema.md", k)
		}
	}
}

func TestClock(t *testing.T) {
	c := testClock
	if got := c.Time(tBase).Format(time.RFC3339Nano); got != "2024-05-01T12:00:03.123456Z" {
		t.Errorf("UTC: %s", got)
	}
	c.Location = time.FixedZone("CEST", 2*3600)
	if got := c.Time(tBase + 1).Format(time.RFC3339Nano); got != "2024-05-01T14:00:03.123456001+02:00" {
		t.Errorf("+02:00: %s", got)
	}
	ev := testEvents()[0]
	line := AppendEvent(nil, &ev, &Options{Clock: c})
	if !bytes.HasPrefix(line, []byte("14:00:03.123456 ")) {
		t.Errorf("text time in +02:00: %q", line)
	}
	j := AppendEventJSON(nil, &ev, c)
	if !bytes.Contains(j, []byte(`"time":"2024-05-01T14:00:03.123456+02:00"`)) {
		t.Errorf("JSON time in +02:00: %s", j)
	}
}

func TestDNS(t *testing.T) {
	cases := []struct {
		name string
		msg  []byte
		text string // "" for no DNS
		json string // the "name" member
	}{
		{"query", dnsQuery(0x1234, 1, "lab.example.", false), " dns 0x1234 A? lab.example", "lab.example"},
		{"response", dnsQuery(0xbeef, 28, "lab.example.", true), " dns 0xbeef AAAA lab.example (response)", "lab.example"},
		{"root", dnsQuery(1, 2, ".", false), " dns 0x1 NS? .", "."},
		{"unknown type", dnsQuery(1, 999, "a.", false), " dns 0x1 TYPE999? a", "a"},
		{"cut in the type", dnsQuery(7, 1, "a.b.", false)[:12+5+1], " dns 0x7 ?? a.b…", "a.b"},
		{"cut in a label", dnsQuery(7, 1, "abcdef.b.", false)[:12+4], " dns 0x7 ?? abc…", "abc"},
		// A label holding a backslash, a dot and a quote.
		{"odd bytes", append([]byte{0, 9, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0}, 6, 'x', '\\', 'y', '.', '"', 'q', 0, 0, 16, 0, 1),
			` dns 0x9 TXT? x\\y\."q`, `x\\y\."q`},
		{"too short", []byte{1, 2, 3}, "", ""},
		{"no question", make([]byte, 12), "", ""},
		{"forward pointer", append([]byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0}, 0xc0, 12, 0, 1, 0, 1), "", ""},
	}
	for _, c := range cases {
		if got := string(appendDNSText(nil, c.msg)); got != c.text {
			t.Errorf("%s: %q, want %q", c.name, got, c.text)
		}
		j := appendDNSJSON([]byte("{"), c.msg)
		if c.text == "" {
			if len(j) != 1 {
				t.Errorf("%s: JSON %s for a non-DNS payload", c.name, j)
			}
			continue
		}
		j = append(j[:1], j[2:]...) // drop the leading comma
		j = append(j, '}')
		var m struct {
			DNS struct {
				Name      string
				Truncated bool
			}
		}
		if err := json.Unmarshal(j, &m); err != nil {
			t.Errorf("%s: %v: %s", c.name, err, j)
			continue
		}
		if m.DNS.Name != c.json {
			t.Errorf("%s: JSON name %q, want %q", c.name, m.DNS.Name, c.json)
		}
		if m.DNS.Truncated != strings.HasSuffix(c.text, "…") {
			t.Errorf("%s: truncated %v", c.name, m.DNS.Truncated)
		}
	}
}

// Rendering an event line does not allocate, except for the name of a DNS
// question (tracer/dnsmsg returns it as a string).
func TestAppendEventNoAlloc(t *testing.T) {
	evs := testEvents()
	opt := testOptions(true)
	buf := make([]byte, 0, 4096)
	for i := range evs {
		limit := 0.0
		if evs[i].PayloadLen > 0 {
			limit = 1
		}
		if n := testing.AllocsPerRun(100, func() { buf = AppendEvent(buf[:0], &evs[i], &opt) }); n > limit {
			t.Errorf("text event %d (%s): %v allocations, want at most %v", i, evs[i].Kind, n, limit)
		}
		if n := testing.AllocsPerRun(100, func() { buf = AppendEventJSON(buf[:0], &evs[i], opt.Clock) }); n > limit {
			t.Errorf("JSON event %d (%s): %v allocations, want at most %v", i, evs[i].Kind, n, limit)
		}
	}
	// Through the writer too.
	r := NewText(discard{}, opt)
	_ = r.Event(&evs[4])
	if n := testing.AllocsPerRun(100, func() { _ = r.Event(&evs[4]) }); n != 0 {
		t.Errorf("Text.Event: %v allocations", n)
	}
	j := NewJSON(discard{}, opt)
	_ = j.Event(&evs[4])
	if n := testing.AllocsPerRun(100, func() { _ = j.Event(&evs[4]) }); n != 0 {
		t.Errorf("JSON.Event: %v allocations", n)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// benchEvents: a DNS query at ct_in (the commonest line when tracing DNS)
// and a DNAT binding.
func benchEvents() map[string]*event.Event {
	evs := testEvents()
	return map[string]*event.Event{"ct_in_dns": &evs[0], "nat": &evs[4], "confirm": &evs[9]}
}

func BenchmarkAppendEvent(b *testing.B) {
	opt := testOptions(false)
	for _, name := range []string{"ct_in_dns", "nat", "confirm"} {
		ev := benchEvents()[name]
		b.Run(name, func(b *testing.B) {
			buf := make([]byte, 0, 512)
			b.ReportAllocs()
			for b.Loop() {
				buf = AppendEvent(buf[:0], ev, &opt)
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

func BenchmarkAppendEventJSON(b *testing.B) {
	for _, name := range []string{"ct_in_dns", "nat", "confirm"} {
		ev := benchEvents()[name]
		b.Run(name, func(b *testing.B) {
			buf := make([]byte, 0, 2048)
			b.ReportAllocs()
			for b.Loop() {
				buf = AppendEventJSON(buf[:0], ev, testClock)
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

func TestIsTerminal(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if IsTerminal(w.Fd()) {
		t.Error("a pipe is a terminal")
	}
	f, err := os.CreateTemp(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if IsTerminal(f.Fd()) {
		t.Error("a file is a terminal")
	}
	pt, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal to test with: %v", err)
	}
	defer pt.Close()
	if !IsTerminal(pt.Fd()) {
		t.Error("/dev/ptmx is not a terminal")
	}
}

func TestNew(t *testing.T) {
	for _, f := range []string{"", "text", "json"} {
		if _, err := New(&bytes.Buffer{}, f, Options{}); err != nil {
			t.Errorf("%q: %v", f, err)
		}
	}
	if _, err := New(&bytes.Buffer{}, "xml", Options{}); err == nil {
		t.Error("xml accepted")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteError(t *testing.T) {
	ev := testEvents()[0]
	inc := testIncidents()[0]
	for _, r := range []Renderer{NewText(failWriter{}, Options{}), NewJSON(failWriter{}, Options{})} {
		for _, err := range []error{r.Event(&ev), r.Incident(&inc), r.Summary(testSummary()), r.Lost(Lost{}), r.Warning("x"), r.Plan(nil)} {
			if err == nil || !strings.Contains(err.Error(), "disk full") {
				t.Errorf("%T: error %v", r, err)
			}
		}
	}
}

func TestTally(t *testing.T) {
	s := testSummary()
	if s.Incidents != 7 {
		t.Errorf("incidents %d", s.Incidents)
	}
	if len(s.ByRace) != 6 || s.ByRace[0].Race != 0 || s.ByRace[5].Race != 5 {
		t.Errorf("by race %+v", s.ByRace)
	}
	if s.ByProcess[0].Comm != "ctlab" || s.ByProcess[0].Count != 6 {
		t.Errorf("by process %+v", s.ByProcess)
	}
	if s.ByDestination[0].Dst.String() != "10.96.0.10:53" || s.ByDestination[0].Count != 4 {
		t.Errorf("by destination %+v", s.ByDestination)
	}
	var ns *NetnsSummary
	for i := range s.Netns {
		if s.Netns[i].Netns == tNetns {
			ns = &s.Netns[i]
		}
	}
	if ns == nil || ns.Resolved != 4 || ns.Dropped != 3 || ns.Name != "ctlab" || ns.Counters["clash_resolve"] != 4 {
		t.Errorf("netns %+v", ns)
	}
	if s.Lost["no-history"] != 1 {
		t.Errorf("lost %v", s.Lost)
	}
	// Reset starts a new interval; counters alone still make a netns row.
	tl := testTally()
	tl.Reset(testNow)
	s = tl.Summary(testNow.Add(10*time.Second), testCounters()[:1], true)
	if s.Incidents != 0 || len(s.ByRace) != 0 || len(s.Netns) != 1 || s.Netns[0].Incidents != 0 || !s.Final {
		t.Errorf("after reset: %+v", s)
	}
	// Losers whose sender is unknown are counted together.
	anon := testIncidents()[0]
	anon.Loser.Task = false
	tl.Add(&anon)
	s = tl.Summary(testNow, nil, false)
	if len(s.ByProcess) != 1 || s.ByProcess[0] != (ProcessCount{Count: 1}) {
		t.Errorf("unknown sender: %+v", s.ByProcess)
	}
	if txt := appendSummaryText(nil, s, &Options{}); !bytes.Contains(txt, []byte("  (sender unknown)  1\n")) {
		t.Errorf("unknown sender in text:\n%s", txt)
	}
	// The summary is a copy: adding more to the tally changes none of it,
	// down to its maps and slices (losses, counters, per-race and per-netns
	// rows).
	tl = testTally()
	s = tl.Summary(testNow, testCounters(), false)
	before, _ := json.Marshal(s)
	for _, inc := range testIncidents() {
		tl.Add(&inc)
	}
	tl.AddLost(Lost{Source: "no-history", CPU: 1, Count: 5})
	tl.AddLost(Lost{Source: "ringbuf", CPU: 0, Count: 2})
	if after, _ := json.Marshal(s); !bytes.Equal(before, after) {
		t.Errorf("summary shares state with the tally:\nbefore %s\nafter  %s", before, after)
	}
}

func TestRaceNames(t *testing.T) {
	want := map[incident.RaceType]string{
		0: "unclassified", 1: "identical tuples", 2: "NAT moved the source port", 3: "DNAT chose different endpoints",
		4: "SNAT port collision (reply tuple taken)", 5: "reverse collision",
	}
	for r, n := range want {
		if RaceName(r) != n {
			t.Errorf("race %d: %q", r, RaceName(r))
		}
		if Mitigation(r) == "" {
			t.Errorf("race %d: no mitigation", r)
		}
	}
	for h, n := range []string{"PREROUTING", "INPUT", "FORWARD", "LOCAL_OUT", "POSTROUTING"} {
		if HookName(uint8(h)) != n {
			t.Errorf("hook %d: %q", h, HookName(uint8(h)))
		}
	}
}

// A hand-filled summary may list races in any order: each race gets one
// mitigation row with its totals, in race order, then the drops.
func TestMitigationsOfUnsortedRaces(t *testing.T) {
	s := &Summary{ByRace: []RaceCount{
		{Race: incident.RaceEndpoints, Outcome: incident.OutcomeNATClash, Count: 2},
		{Race: incident.RaceIdentical, Outcome: incident.OutcomeMerged, Count: 1},
		{Race: incident.RaceEndpoints, Outcome: incident.OutcomeDropped, Count: 1},
	}}
	var got []string
	for _, m := range mitigationsOf(s) {
		race := -1
		if m.Race != nil {
			race = *m.Race
		}
		got = append(got, fmt.Sprintf("%d %s %d/%d", race, m.Outcome, m.Incidents, m.Dropped))
	}
	if want := []string{"1  1/0", "3  3/1", "-1 dropped 1/1"}; !slices.Equal(got, want) {
		t.Errorf("mitigations %q, want %q", got, want)
	}
}
