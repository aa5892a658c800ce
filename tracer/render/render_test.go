package render

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/kstat"
	"github.com/ctprobe/ctprobe/tracer/loss"
	"github.com/ctprobe/ctprobe/tracer/plan"
	"github.com/ctprobe/ctprobe/tracer/summary"
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
	writeEvents(NewText(&buf, testOptions(color)))
	return buf.Bytes()
}

func eventsJSON() []byte {
	var buf bytes.Buffer
	writeEvents(NewJSON(&buf, testOptions(false)))
	return buf.Bytes()
}

func writeEvents(r Renderer) {
	for _, ev := range testEvents() {
		if err := r.Event(&ev); err != nil {
			panic(err)
		}
	}
	if err := r.Flush(); err != nil {
		panic(err)
	}
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
func summaries() []*summary.Summary {
	s1 := testSummary()
	s1.Netns = append(s1.Netns, summary.NetnsSummary{Netns: 4026532999, Incidents: 0}) // seen, not read
	slices.SortFunc(s1.Netns, func(a, b summary.NetnsSummary) int { return int(int64(a.Netns) - int64(b.Netns)) })

	t := summary.NewTally(time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC))
	for _, inc := range testIncidents()[:2] {
		t.Add(&inc)
	}
	s2 := t.Summary(testNow, []kstat.NetnsCounters{{Netns: tNetns, Name: "ctlab", Values: map[string]uint64{"insert_failed": 2, "drop": 1}}}, false)

	s3 := summary.NewTally(time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)).Summary(testNow, nil, true)
	return []*summary.Summary{s1, s2, s3}
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

var testPlan = []plan.Entry{
	{Point: "ct_in", Function: "nf_conntrack_in", Attach: "fexit", Status: "attached"},
	{Point: "nat", Function: "nf_nat_setup_info", Attach: "fexit", Status: "attached"},
	{Point: "clash", Function: "nf_ct_resolve_clash", Attach: "fentry", Status: "skipped", Reason: "not a symbol before 5.6"},
	{Point: "confirm", Function: "__nf_conntrack_confirm", Attach: "kretprobe", Status: "attached"},
}

var testHeader = Header{Version: "v1.2.3", Kernel: "6.12.48+deb13-amd64", Hostname: "node-a", Mode: "incidents", Start: testNow.Add(-10 * time.Second)}

func miscOut(r Renderer) error {
	fs := testFindings()
	return errors.Join(
		r.Header(&testHeader),
		r.Plan(testPlan),
		r.Finding(&fs[0]),
		r.Finding(&fs[1]),
		r.Warning(`netns 4026532999: cannot read /proc/net/stat/nf_conntrack: permission denied`),
		r.Lost(loss.Count{Kind: loss.Ringbuf, CPU: 1, Count: 12}),
		r.Lost(loss.Count{Kind: loss.KretprobeMissed, CPU: -1, Count: 1}),
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

// Rendering an event line does not allocate, the name of a DNS question
// included.
func TestAppendEventNoAlloc(t *testing.T) {
	evs := testEvents()
	opt := testOptions(true)
	buf := make([]byte, 0, 4096)
	dns := 0
	for i := range evs {
		if evs[i].PayloadLen > 0 {
			dns++
		}
		if n := testing.AllocsPerRun(100, func() { buf = AppendEvent(buf[:0], &evs[i], &opt) }); n != 0 {
			t.Errorf("text event %d (%s): %v allocations", i, evs[i].Kind, n)
		}
		if n := testing.AllocsPerRun(100, func() { buf = AppendEventJSON(buf[:0], &evs[i], opt.Clock) }); n != 0 {
			t.Errorf("JSON event %d (%s): %v allocations", i, evs[i].Kind, n)
		}
	}
	if dns == 0 {
		t.Fatal("no event with a DNS message")
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

// Event lines wait for Flush, or for any other output, which comes after
// them; so many wait at most that a busy trace writes them in 32 KiB
// pieces, each ending with a whole line.
func TestEventsHeldUntilFlush(t *testing.T) {
	evs := testEvents()
	for name, r := range map[string]func(w io.Writer) Renderer{
		"text": func(w io.Writer) Renderer { return NewText(w, testOptions(false)) },
		"json": func(w io.Writer) Renderer { return NewJSON(w, testOptions(false)) },
	} {
		t.Run(name, func(t *testing.T) {
			var w writes
			out := r(&w)
			for i := range evs {
				if err := out.Event(&evs[i]); err != nil {
					t.Fatal(err)
				}
			}
			if len(w) != 0 {
				t.Fatalf("%d writes before Flush", len(w))
			}
			if err := out.Flush(); err != nil {
				t.Fatal(err)
			}
			if len(w) != 1 || bytes.Count(w[0], []byte("\n")) != len(evs) {
				t.Fatalf("Flush made %d writes, want one of %d lines", len(w), len(evs))
			}
			if err := out.Flush(); err != nil || len(w) != 1 {
				t.Fatalf("a second Flush wrote again (%v)", err)
			}
			w = nil
			if err := out.Event(&evs[0]); err != nil {
				t.Fatal(err)
			}
			if err := out.Warning("w"); err != nil {
				t.Fatal(err)
			}
			if len(w) != 1 || bytes.Count(w[0], []byte("\n")) != 2 || !bytes.Contains(w[0][bytes.IndexByte(w[0], '\n'):], []byte(`w`)) {
				t.Fatalf("a warning after an event line: writes %q, want the line and then the warning in one", w)
			}
			w = nil
			var lines int
			for lines = 0; len(w) == 0; lines++ {
				if err := out.Event(&evs[lines%len(evs)]); err != nil {
					t.Fatal(err)
				}
			}
			if len(w[0]) < holdMax || len(w[0]) > holdMax+2048 || w[0][len(w[0])-1] != '\n' || bytes.Count(w[0], []byte("\n")) != lines {
				t.Errorf("without Flush, %d lines came out as a write of %d bytes", lines, len(w[0]))
			}
		})
	}
}

// writes keeps each Write apart.
type writes [][]byte

func (w *writes) Write(b []byte) (int, error) {
	*w = append(*w, bytes.Clone(b))
	return len(b), nil
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteError(t *testing.T) {
	ev := testEvents()[0]
	inc := testIncidents()[0]
	for _, r := range []Renderer{NewText(failWriter{}, Options{}), NewJSON(failWriter{}, Options{})} {
		event := func() error {
			if err := r.Event(&ev); err != nil {
				return err
			}
			return r.Flush()
		}
		for _, err := range []error{event(), r.Incident(&inc), r.Summary(testSummary()), r.Lost(loss.Count{}), r.Warning("x"), r.Plan(nil)} {
			if err == nil || !strings.Contains(err.Error(), "disk full") {
				t.Errorf("%T: error %v", r, err)
			}
		}
	}
}

func TestHookNames(t *testing.T) {
	for h, n := range []string{"PREROUTING", "INPUT", "FORWARD", "LOCAL_OUT", "POSTROUTING"} {
		if HookName(uint8(h)) != n {
			t.Errorf("hook %d: %q", h, HookName(uint8(h)))
		}
	}
}
