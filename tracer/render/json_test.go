package render

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/loss"
)

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
		if s, ok := m["schema"].(json.Number); !ok || s.String() != fmt.Sprint(SchemaVersion) {
			t.Fatalf("line %d: schema %v, want %d", i+1, m["schema"], SchemaVersion)
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
	if !slices.Equal(results, []string{"inserted", "merged", string(incident.OutcomeNATClash), string(incident.OutcomeDropped)}) {
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
		if m["race_name"] != incs[i].Race.Name() {
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
	if lines[7]["winner"] != nil || lines[7]["window_us"] != nil || lines[7]["clash_dir"] != nil {
		t.Errorf("race 0 without a winner: %v", lines[7])
	}
	if pm := lines[6]; pm["outcome"] != "port-moved" || pm["race"].(json.Number).String() != "5" || pm["clash_dir"] != nil ||
		!strings.Contains(pm["mitigation"].(string), "NOTRACK") {
		t.Errorf("race 5 port moved: %v", pm)
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
			want(t, wn, n, "insert_failures", tInt)
			want(t, wn, n, "entries", tInt)
			want(t, wn, n, "nf_conntrack_max", tInt)
			if c, ok := want(t, wn, n, "completeness", tObject, tNull).(map[string]any); ok {
				wantCompleteness(wn+" completeness", c)
			}
			if u, ok := want(t, wn, n, "unexplained", tObject, tNull).(map[string]any); ok {
				want(t, wn+" unexplained", u, "insert_failed", tInt)
				want(t, wn+" unexplained", u, "drop", tInt)
				rs, _ := want(t, wn+" unexplained", u, "reasons", tArray, tNull).([]any)
				for _, r := range rs {
					if _, ok := r.(string); !ok {
						t.Errorf("%s: reason %v", wn, r)
					}
				}
			}
		}
		tot := want(t, w, m, "total", tObject).(map[string]any)
		for _, k := range []string{"netns_with_counters", "incidents", "resolved", "dropped", "insert_failures", "uncounted"} {
			want(t, w+" total", tot, k, tInt)
		}
		want(t, w+" total", tot, "counters", tObject)
		if c, ok := want(t, w+" total", tot, "completeness", tObject, tNull).(map[string]any); ok {
			wantCompleteness(w+" total completeness", c)
		}
		lost := want(t, w, m, "lost", tObject).(map[string]any)
		want(t, w+" lost", lost, "total", tInt)
		bs := want(t, w+" lost", lost, "by_source", tObject).(map[string]any)
		for _, src := range loss.Kinds {
			want(t, w+" lost by_source", bs, string(src), tInt)
		}
		for _, f := range want(t, w, m, "findings", tArray).([]any) {
			f := f.(map[string]any)
			want(t, w+" finding", f, "id", tString)
			want(t, w+" finding", f, "netns", tInt)
			want(t, w+" finding", f, "count", tInt)
			wantFinding(t, w+" finding example", want(t, w+" finding", f, "example", tObject).(map[string]any))
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
	// One row per race and text: race 5 merged and port-moved differ.
	if n := len(lines[0]["mitigations"].([]any)); n != 8 {
		t.Errorf("%d mitigations, want 8 (races 0-5, race 5 twice, and dropped)", n)
	}
	if n := len(lines[0]["findings"].([]any)); n != 2 {
		t.Errorf("%d findings, want 2", n)
	}
	host := lines[0]["netns"].([]any)[0].(map[string]any)["unexplained"].(map[string]any)
	if rs := fmt.Sprint(host["reasons"]); !strings.Contains(rs, "the table was full") || !strings.Contains(rs, "invalid +1") {
		t.Errorf("host netns: drops unexplained %v", host)
	}
}

func TestJSONMisc(t *testing.T) {
	lines := decodeLines(t, miscJSON())
	kinds := []string{}
	for _, m := range lines {
		kinds = append(kinds, m["kind"].(string))
	}
	if !slices.Equal(kinds, []string{"header", "plan", "finding", "finding", "warning", "lost", "lost"}) {
		t.Fatalf("kinds %v", kinds)
	}
	h := lines[0]
	for k, v := range map[string]string{"version": testHeader.Version, "kernel": testHeader.Kernel, "hostname": testHeader.Hostname, "mode": testHeader.Mode} {
		if h[k] != v {
			t.Errorf("header %s %v, want %q", k, h[k], v)
		}
	}
	wantTime(t, "header", h, "start")
	if h["start"] != "2024-05-01T12:00:00Z" || h["capture"] != false {
		t.Errorf("header %v", h)
	}
	lines = lines[1:]
	for _, m := range lines {
		wantTime(t, "misc", m, "time")
	}
	for _, f := range lines[1:3] {
		wantFinding(t, "finding", f)
	}
	if in := lines[1]["inner"].(map[string]any); in["tunnel"] != "VXLAN" || in["ports"] != true ||
		in["flow"].(map[string]any)["dst"] != "10.244.2.1:53" {
		t.Errorf("tunnel inner flow %v", in)
	}
	if lines[2]["inner"] != nil {
		t.Errorf("chain-too-long finding with an inner flow: %v", lines[2])
	}
	for _, p := range lines[0]["points"].([]any) {
		p := p.(map[string]any)
		for _, k := range []string{"point", "function", "mode", "status", "reason"} {
			want(t, "plan point", p, k, tString)
		}
	}
	lines = slices.Delete(lines, 1, 3) // the findings
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
	for _, b := range [][]byte{eventsJSON(), incidentsJSON(), summariesJSON(), miscJSON(), probesJSON(&testProbes), nodesOut("json")} {
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

// wantFinding checks the keys of a "finding" line.
func wantFinding(t *testing.T, w string, f map[string]any) {
	t.Helper()
	if f["kind"] != "finding" {
		t.Errorf("%s: kind %v", w, f["kind"])
	}
	wantTime(t, w, f, "time")
	want(t, w, f, "ktime_ns", tInt)
	want(t, w, f, "id", tString)
	want(t, w, f, "netns", tInt)
	want(t, w, f, "reason", tString)
	want(t, w, f, "mitigation", tString)
	want(t, w, f, "flow", tObject)
	if in, ok := want(t, w, f, "inner", tObject, tNull).(map[string]any); ok {
		want(t, w+" inner", in, "tunnel", tString)
		want(t, w+" inner", in, "vni", tInt)
		want(t, w+" inner", in, "flow", tObject)
		want(t, w+" inner", in, "ports", tBool)
	}
}
