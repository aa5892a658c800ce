package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ctprobe/ctprobe/tracer/capture"
	"github.com/ctprobe/ctprobe/tracer/names"
	"github.com/ctprobe/ctprobe/tracer/stream/streamtest"
)

// jsonTuple is a tuple as JSON prints it.
type jsonTuple struct {
	proto    string
	src, dst netip.AddrPort
}

// tuplesOf are the tuples under keys of a JSON object (an incident's
// packet or an event), the ones it has.
func tuplesOf(t *testing.T, m map[string]any, keys ...string) []jsonTuple {
	t.Helper()
	var out []jsonTuple
	for _, k := range keys {
		v, ok := m[k].(map[string]any)
		if !ok {
			continue
		}
		src, err1 := netip.ParseAddrPort(v["src"].(string))
		dst, err2 := netip.ParseAddrPort(v["dst"].(string))
		if err1 != nil || err2 != nil {
			t.Fatalf("tuple %v: %v %v", v, err1, err2)
		}
		out = append(out, jsonTuple{v["proto"].(string), src, dst})
	}
	return out
}

// packets are an incident's loser and, when it has one, its winner.
func packets(inc map[string]any) []map[string]any {
	ps := []map[string]any{inc["loser"].(map[string]any)}
	if w, ok := inc["winner"].(map[string]any); ok {
		ps = append(ps, w)
	}
	return ps
}

// anyPacket says whether one of an incident's packets satisfies f.
func anyPacket(inc map[string]any, f func(p map[string]any) bool) bool {
	return slices.ContainsFunc(packets(inc), f)
}

func hasPort(ts []jsonTuple, port uint16) bool {
	return slices.ContainsFunc(ts, func(u jsonTuple) bool { return u.src.Port() == port || u.dst.Port() == port })
}

func hasHost(ts []jsonTuple, host netip.Addr) bool {
	return slices.ContainsFunc(ts, func(u jsonTuple) bool { return u.src.Addr() == host || u.dst.Addr() == host })
}

func timeOf(t *testing.T, m map[string]any) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, m["time"].(string))
	if err != nil {
		t.Fatal(err)
	}
	return at
}

// synthNamedCapture writes a synthetic capture of a busy node traced with
// --all --timeline (races 1, 3 and 4, many senders), its kernel booted an
// hour before its trace started, with a pod name for every sender of an
// incident's packet, as a trace that names pods records them.
func synthNamedCapture(t *testing.T, dir string) string {
	t.Helper()
	opt := streamtest.BusyNode()
	opt.Flows, opt.Races, opt.Live = 1500, 0.02, 800
	s, err := streamtest.Synthesize(opt)
	if err != nil {
		t.Fatal(err)
	}
	raw := filepath.Join(dir, "synthetic.raw")
	if err := os.WriteFile(raw, s.File, 0o600); err != nil {
		t.Fatal(err)
	}
	// Every sender of an incident's packet (names.Key as the pipeline
	// looks it up: netns, sending process, source address) in pod-PID.
	var entries []names.Entry
	for _, inc := range ofKind(jsonReport(t, raw), "incident") {
		for _, p := range packets(inc) {
			if p["task"] != true {
				continue
			}
			pid := uint32(p["pid"].(float64))
			k := names.Key{Netns: uint32(p["netns"].(float64)), PID: pid, Addr: tuplesOf(t, p, "orig")[0].src.Addr()}
			entries = append(entries, names.Entry{Key: k, Names: names.Names{Pod: names.Pod{Namespace: "default", Name: fmt.Sprintf("pod-%d", pid), UID: strconv.Itoa(int(pid))}}})
		}
	}
	return rewriteNamed(t, raw, dir, func(h *capture.Header, _ *capture.Trailer) {
		h.StartUnixNano = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC).UnixNano()
		h.BootTimeUnixNano = h.StartUnixNano - int64(time.Hour) - 1e9 // the records start 1 s into the boot
	}, entries)[0]
}

// selectCase is a report selection and what it must select, judged from
// the unselected report's JSON alone.
type selectCase struct {
	args     []string
	incident func(inc map[string]any) bool
	// event: the events it selects; nil: none (a selection of what events
	// do not have).
	event func(ev map[string]any) bool
	// comparable: the summary keeps the kernel's counters.
	comparable bool
}

// checkSelection reports path with and without each case's selection and
// checks that the selected report holds exactly the incidents and events
// of the whole one that the case's predicates accept, in the same order
// and printed the same, that the summary counts them and says what was
// selected, and that the kernel's counters stay only where comparable.
// Each case must select some incidents but not all of them, or none where
// want is empty, so that a selection that selects everything or nothing
// fails.
func checkSelection(t *testing.T, paths []string, cases []selectCase) {
	t.Helper()
	var rs []string
	for _, p := range paths {
		rs = append(rs, "-r", p)
	}
	all := jsonRun(t, append(append([]string{"report"}, rs...), "--all")...)
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			got := jsonRun(t, append(append(append([]string{"report"}, rs...), "--all"), c.args...)...)
			for _, k := range []struct {
				kind   string
				accept func(map[string]any) bool
			}{{"incident", c.incident}, {"event", c.event}} {
				var want []string
				for _, m := range ofKind(all, k.kind) {
					if k.accept != nil && k.accept(m) {
						want = append(want, withoutNode(m))
					}
				}
				var have []string
				for _, m := range ofKind(got, k.kind) {
					have = append(have, withoutNode(m))
				}
				if !slices.Equal(have, want) {
					t.Errorf("%d %ss selected, want %d (of %d)", len(have), k.kind, len(want), len(ofKind(all, k.kind)))
				}
				if k.kind == "incident" && (len(want) == 0 || len(want) == len(ofKind(all, k.kind))) {
					t.Errorf("the case selects %d of %d incidents: choose one that selects some", len(want), len(ofKind(all, k.kind)))
				}
			}
			sums := ofKind(got, "summary")
			if len(sums) != 1 {
				t.Fatalf("%d summaries", len(sums))
			}
			sum := sums[0]
			if n := int(sum["incidents"].(float64)); n != len(ofKind(got, "incident")) {
				t.Errorf("summary counts %d incidents, %d printed", n, len(ofKind(got, "incident")))
			}
			if sel, _ := sum["selection"].(string); sel == "" {
				t.Errorf("summary does not say what was selected")
			}
			for _, ns := range sum["netns"].([]any) {
				n := ns.(map[string]any)
				if has := n["counters"] != nil; has != c.comparable {
					t.Errorf("netns %v: counters given %v, want %v", n["netns"], has, c.comparable)
				}
			}
		})
	}
}

// The flow filters, race, outcome and pod select exactly the incidents
// (and, with --all, the events) whose printed fields they name, on a
// synthetic busy node whose senders are named; the kernel's counters stay
// beside the selection only for a whole netns.
func TestReportSelectsSynthetic(t *testing.T) {
	inUTC(t)
	path := synthNamedCapture(t, t.TempDir())
	whole := jsonReport(t, path)
	incs := ofKind(whole, "incident")
	// Values taken from one incident, so that each case selects some.
	third := incs[len(incs)/3]
	loser := third["loser"].(map[string]any)
	pid := uint32(loser["pid"].(float64))
	endpoint := tuplesOf(t, loser, "reply")[0].src // after DNAT: only in reply tuples
	sport := tuplesOf(t, loser, "orig")[0].src.Port()
	evTuples := func(ev map[string]any) []jsonTuple { return tuplesOf(t, ev, "orig", "reply", "before") }
	pktTuples := func(p map[string]any) []jsonTuple { return tuplesOf(t, p, "orig", "reply", "reply_before_nat") }
	race := func(rs ...float64) func(map[string]any) bool {
		return func(inc map[string]any) bool { return slices.Contains(rs, inc["race"].(float64)) }
	}
	outcome := func(os ...string) func(map[string]any) bool {
		return func(inc map[string]any) bool { return slices.Contains(os, inc["outcome"].(string)) }
	}
	byPID := func(p map[string]any) bool { return p["task"] == true && uint32(p["pid"].(float64)) == pid }
	checkSelection(t, []string{path}, []selectCase{
		{args: []string{"--race", "3"}, incident: race(3)},
		{args: []string{"--race", "1,4"}, incident: race(1, 4)},
		{args: []string{"--outcome", "dropped"}, incident: outcome("dropped")},
		{args: []string{"--outcome", "merged,nat-clash", "--race", "1"}, incident: func(m map[string]any) bool {
			return race(1)(m) && outcome("merged", "nat-clash")(m)
		}},
		{args: []string{"--host", endpoint.Addr().String()},
			incident: func(m map[string]any) bool {
				return anyPacket(m, func(p map[string]any) bool { return hasHost(pktTuples(p), endpoint.Addr()) })
			},
			event: func(ev map[string]any) bool { return hasHost(evTuples(ev), endpoint.Addr()) }},
		{args: []string{"--port", strconv.Itoa(int(sport)), "--proto", "udp"},
			incident: func(m map[string]any) bool {
				return anyPacket(m, func(p map[string]any) bool {
					ts := pktTuples(p)
					return ts[0].proto == "udp" && hasPort(ts, sport)
				})
			},
			event: func(ev map[string]any) bool {
				ts := evTuples(ev)
				return ts[0].proto == "udp" && hasPort(ts, sport)
			}},
		{args: []string{"--pid", strconv.Itoa(int(pid))},
			incident: func(m map[string]any) bool { return anyPacket(m, byPID) },
			event: func(ev map[string]any) bool {
				// Only ct_in and confirm say whether their task sent the packet.
				p := ev["point"]
				return (p == "ct_in" || p == "confirm") && uint32(ev["pid"].(float64)) == pid && senderContext(ev)
			}},
		{args: []string{"--pod", fmt.Sprintf("default/pod-%d", pid)},
			incident: func(m map[string]any) bool {
				return anyPacket(m, func(p map[string]any) bool {
					pod, _ := p["pod"].(map[string]any)
					return pod != nil && pod["namespace"] == "default" && pod["name"] == fmt.Sprintf("pod-%d", pid)
				})
			}},
	})
}

// senderContext says, from an event's printed fields, whether its task is
// the one that sent its packet (event.InTask, judged again from JSON).
func senderContext(ev map[string]any) bool {
	flags := map[string]bool{}
	for _, f := range ev["flags"].([]any) {
		flags[f.(string)] = true
	}
	switch ev["point"] {
	case "ct_in":
		return flags["origin"] || ev["hook"] == "LOCAL_OUT" && !flags["softirq_key"]
	case "confirm":
		return flags["local"] && flags["sock"] && !flags["softirq_key"]
	}
	return false
}

// On two VM nodes' captures merged: --netns keeps one node's namespace with
// its kernel counters, and the time window selects by the incidents' times,
// in each of the forms a reader copies from a report.
func TestReportSelectsNodes(t *testing.T) {
	inUTC(t)
	dir := t.TempDir()
	a, b := twoNodes(t, dir)
	merged := ofKind(jsonReport(t, a, b), "incident")
	netnsB := uint64(ofKind(jsonReport(t, b), "incident")[0]["netns"].(float64))
	from, to := timeOf(t, merged[len(merged)/4]), timeOf(t, merged[3*len(merged)/4])
	var start time.Time // the earliest capture's
	for _, h := range ofKind(jsonReport(t, a, b), "header") {
		if at := timeOf(t, map[string]any{"time": h["start"]}); start.IsZero() || at.Before(start) {
			start = at
		}
	}
	within := func(lo, hi time.Time) func(map[string]any) bool {
		return func(m map[string]any) bool {
			at := timeOf(t, m)
			return !at.Before(lo) && !at.After(hi)
		}
	}
	// A time of day as text prints it has µs: the bound is that µs.
	fromText, toText := from.Truncate(time.Microsecond), to.Truncate(time.Microsecond)
	checkSelection(t, []string{a, b}, []selectCase{
		{args: []string{"--netns", strconv.FormatUint(netnsB, 10)}, comparable: true,
			incident: func(m map[string]any) bool { return uint64(m["netns"].(float64)) == netnsB },
			event:    func(ev map[string]any) bool { return uint64(ev["netns"].(float64)) == netnsB }},
		{args: []string{"--since", from.Format(time.RFC3339Nano), "--until", to.Format(time.RFC3339Nano)},
			incident: within(from, to), event: within(from, to)},
		{args: []string{"--since", fromText.Format("15:04:05.000000"), "--until", toText.Format("2006-01-02 15:04:05.000000")},
			incident: within(fromText, toText), event: within(fromText, toText)},
		{args: []string{"--since", "+" + from.Sub(start).String()},
			incident: within(from, time.Unix(1<<40, 0)), event: within(from, time.Unix(1<<40, 0))},
	})
}

// The text summary says what was selected, and compares the kernel's
// counters only for a selection of one netns.
func TestReportSelectionText(t *testing.T) {
	inUTC(t)
	dir := t.TempDir()
	a, b := twoNodes(t, dir)
	netnsB := strconv.FormatUint(uint64(ofKind(jsonReport(t, b), "incident")[0]["netns"].(float64)), 10)
	for _, c := range []struct {
		args     []string
		want     []string
		compared bool
	}{
		{[]string{"--race", "3"}, []string{"selected: race 3\n", "kernel counters not compared"}, false},
		{[]string{"--netns", netnsB}, []string{"selected: netns " + netnsB + "\n", "[node-b] netns " + netnsB}, true},
	} {
		code, out, stderr := runCLI(append([]string{"report", "-r", a, "-r", b, "--no-color"}, c.args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", c.args, code, stderr)
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: the report lacks %q", c.args, w)
			}
		}
		if got := strings.Contains(out, "completeness\n"); got != c.compared {
			t.Errorf("%v: completeness printed %v, want %v", c.args, got, c.compared)
		}
	}
}

// --pod on a capture whose trace named no pods says so, once per file,
// and selects nothing.
func TestReportPodWithoutNames(t *testing.T) {
	code, stdout, stderr := runCLI("report", "-r", vmCapture510, "--pod", "default/client", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if want := "ctprobe: warning: " + vmCapture510 + " names no pods (its trace ran without pod names), so --pod selects nothing from it\n"; stderr != want {
		t.Errorf("stderr %q, want %q", stderr, want)
	}
	if n := len(incidents(t, stdout)); n != 0 {
		t.Errorf("%d incidents selected", n)
	}
}
