package render

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/kstat"
	"github.com/ctprobe/ctprobe/tracer/loss"
	"github.com/ctprobe/ctprobe/tracer/names"
	"github.com/ctprobe/ctprobe/tracer/plan"
	"github.com/ctprobe/ctprobe/tracer/render/rendertest"
	"github.com/ctprobe/ctprobe/tracer/summary"
)

// Strings an attacker controls, and what text output must print for each.
var hostile = []struct{ raw, text string }{
	{"\x1b]0;pwned\a\x1b[2J", `\x1b]0;pwned\x07\x1b[2J`}, // retitle, clear the screen
	{"a\x9b2Jb", `a\x9b2Jb`},                             // 8-bit CSI, a bare byte
	{"a\u009b2J", `a\xc2\x9b2J`},                         // CSI as a UTF-8 C1 control
	{"x\x7fy", `x\x7fy`},                                 // DEL
	{"evil\u202egnp.sh", `evil\xe2\x80\xaegnp.sh`},       // right-to-left override
	{"\xff\xfe!", `\xff\xfe!`},                           // not UTF-8
	{"zoë 東京", "zoë 東京"},                                 // printable UTF-8 stays
	{`back\slash`, `back\slash`},
	{"tab\there", `tab\x09here`},
}

func TestAppendEscaped(t *testing.T) {
	for _, h := range hostile {
		if got := string(appendEscaped(nil, h.raw)); got != h.text {
			t.Errorf("appendEscaped(%q) = %q, want %q", h.raw, got, h.text)
		}
		if got := Escape(h.raw); got != h.text {
			t.Errorf("Escape(%q) = %q, want %q", h.raw, got, h.text)
		}
	}
}

// hostileLines are every kind of line with a string from outside set to
// s: a process name (event, incident, summary), a pod, container and
// netns name (incident, summary), a DNS name, a loss kind, a
// warning, the plan, a netns name and a counter name as a capture from
// another machine would carry them, the probes report, and the sender of
// a finding's flow.
func hostileLines(s string) map[string]func(Renderer) error {
	ev := testEvents()[0]
	ev.Comm = [16]byte{}
	copy(ev.Comm[:15], s)
	incs := testIncidents()
	inc := &incs[0]
	inc.Loser.Comm, inc.Winner.Comm, inc.Winner.PID = s, s, inc.Loser.PID+1
	inc.Reason = s
	inc.Loser.DNS.Name = s
	// Pod and container names come from the container runtime or a
	// capture; the winner is another pod, so both are printed.
	inc.Loser.Names = names.Names{Pod: names.Pod{Namespace: s, Name: s, UID: "u1"}, Container: s, Netns: s}
	inc.Winner.Names = names.Names{Pod: names.Pod{Namespace: s, Name: s + "2", UID: "u2"}, Container: s}
	finding := testFindings()[1]
	finding.Flow.Comm = s
	unknown := incs[len(incs)-1]
	unknown.Race, unknown.Reason = incident.RaceUnknown, s
	tally := summary.NewTally(testNow)
	tally.Add(inc)
	tally.AddLost(loss.Count{Kind: loss.Kind(s), CPU: -1, Count: 1})
	counters := []kstat.NetnsCounters{{Netns: uint64(inc.Loser.Netns), Name: s, Values: map[string]uint64{s: 1, "insert_failed": 1}}}
	p := []plan.Entry{{Point: s, Function: s, Attach: plan.Attach(s), Status: plan.Status(s), Reason: s}}
	return map[string]func(Renderer) error{
		"plan": func(r Renderer) error { return r.Plan(p) },
		"event": func(r Renderer) error {
			if err := r.Event(&ev); err != nil {
				return err
			}
			return r.Flush()
		},
		"incident": func(r Renderer) error { return r.Incident(inc) },
		"unknown":  func(r Renderer) error { return r.Incident(&unknown) },
		"finding":  func(r Renderer) error { return r.Finding(&finding) },
		"lost":     func(r Renderer) error { return r.Lost(loss.Count{Kind: loss.Kind(s), CPU: 2, Count: 3}) },
		"warning":  func(r Renderer) error { return r.Warning(s) },
		"summary":  func(r Renderer) error { return r.Summary(tally.Summary(testNow, counters, true)) },
		"probes":   func(r Renderer) error { return r.Probes(&Probes{Kernel: s, Fentry: s, ClashEra: s, Plan: p, Error: s}) },
	}
}

// withoutColors removes ctprobe's own colours, the only escapes it may
// print.
func withoutColors(b []byte) []byte {
	for _, c := range []string{ansiReset, ansiBold, ansiRed, ansiGreen, ansiYellow, ansiMagenta, ansiCyan, ansiDim} {
		b = bytes.ReplaceAll(b, []byte(c), nil)
	}
	return b
}

// asJSONDecodes is s as a JSON string decodes: each byte that is not
// UTF-8 replaced by U+FFFD.
func asJSONDecodes(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r)
	}
	return b.String()
}

// holdsString says whether s is a key or string value anywhere in v.
func holdsString(v any, s string) bool {
	switch v := v.(type) {
	case string:
		return v == s
	case []any:
		for _, e := range v {
			if holdsString(e, s) {
				return true
			}
		}
	case map[string]any:
		for k, e := range v {
			if k == s || holdsString(e, s) {
				return true
			}
		}
	}
	return false
}

// No string from outside reaches the terminal as a control, in either
// format; text shows each escaped, JSON carries it exactly.
func TestHostileStrings(t *testing.T) {
	for _, h := range hostile {
		for kind, line := range hostileLines(h.raw) {
			for _, color := range []bool{false, true} {
				var text bytes.Buffer
				if err := line(NewText(&text, testOptions(color))); err != nil {
					t.Fatal(err)
				}
				out := withoutColors(text.Bytes())
				if c := rendertest.FirstControl(out); c != "" {
					t.Errorf("%s text of %q (colour %v): %s:\n%s", kind, h.raw, color, c, out)
				}
				if !bytes.Contains(out, []byte(h.text)) {
					t.Errorf("%s text of %q lacks %q:\n%s", kind, h.raw, h.text, out)
				}
			}
			// An agent's log on stderr, in both of slog's formats.
			for _, handler := range []func(*bytes.Buffer) slog.Handler{
				func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
				func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
			} {
				var log bytes.Buffer
				if err := line(Log{L: slog.New(handler(&log))}); err != nil {
					t.Fatal(err)
				}
				if c := rendertest.FirstControl(log.Bytes()); c != "" {
					t.Errorf("%s log of %q: %s:\n%s", kind, h.raw, c, log.Bytes())
				}
			}
			var js bytes.Buffer
			if err := line(NewJSON(&js, testOptions(false))); err != nil {
				t.Fatal(err)
			}
			if c := rendertest.FirstControl(js.Bytes()); c != "" {
				t.Errorf("%s JSON of %q: %s:\n%s", kind, h.raw, c, js.String())
			}
			want := asJSONDecodes(h.raw)
			found := false
			for _, l := range decodeLines(t, js.Bytes()) {
				found = found || holdsString(l, want)
			}
			if !found {
				t.Errorf("%s JSON of %q does not decode to %q anywhere:\n%s", kind, h.raw, want, js.String())
			}
		}
	}
}

// appendJSONString and escapeJSONControls agree with encoding/json on what
// a string decodes to, and leave no control raw.
func TestJSONEscapesControls(t *testing.T) {
	for _, h := range hostile {
		want := asJSONDecodes(h.raw)
		hand := appendJSONString(nil, h.raw)
		std, _ := json.Marshal(h.raw)
		for name, b := range map[string][]byte{"appendJSONString": hand, "encoding/json": escapeJSONControls(std)} {
			if c := rendertest.FirstControl(b); c != "" {
				t.Errorf("%s(%q) = %s: %s", name, h.raw, b, c)
			}
			var got string
			if err := json.Unmarshal(b, &got); err != nil || got != want {
				t.Errorf("%s(%q) = %s decodes to %q, %v; want %q", name, h.raw, b, got, err, want)
			}
		}
	}
}

// FuzzEscape: whatever the string, text and JSON forms have no control
// and JSON decodes to the string (invalid UTF-8 replaced).
func FuzzEscape(f *testing.F) {
	for _, h := range hostile {
		f.Add(h.raw)
	}
	f.Fuzz(func(t *testing.T, s string) {
		text := appendEscaped(nil, s)
		if c := rendertest.FirstControl(text); c != "" {
			t.Fatalf("appendEscaped(%q) = %q: %s", s, text, c)
		}
		if utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r >= 0x7f }) && string(text) != s {
			t.Fatalf("printable ASCII %q changed to %q", s, text)
		}
		std, _ := json.Marshal(s)
		for _, b := range [][]byte{appendJSONString(nil, s), escapeJSONControls(std)} {
			if c := rendertest.FirstControl(b); c != "" {
				t.Fatalf("JSON %s of %q: %s", b, s, c)
			}
			var got string
			if err := json.Unmarshal(b, &got); err != nil || got != asJSONDecodes(s) {
				t.Fatalf("JSON %s of %q decodes to %q, %v", b, s, got, err)
			}
		}
	})
}
