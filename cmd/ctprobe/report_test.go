package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ctprobe/ctprobe/tracer/capture"
	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/event/eventtest"
	"github.com/ctprobe/ctprobe/tracer/mode"
	"github.com/ctprobe/ctprobe/tracer/probe"
	"github.com/ctprobe/ctprobe/tracer/render/rendertest"
)

// lookups is a capture of a trace --all that saw n race-3 lookups by dig,
// 1 ms apart, with a loss noted after the first.
func lookups(t *testing.T, n int) []byte {
	t.Helper()
	data, err := eventtest.Lookups(n, "dig", "node-a")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// reportBytes runs `ctprobe report -o json` (or text) on data.
func reportBytes(t *testing.T, data []byte, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.ctp")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return runCLI(append([]string{"report", "-r", path}, args...)...)
}

// reported is what a JSON report says, one line each.
func reported(t *testing.T, stdout string) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		b, _ := json.Marshal(m)
		out = append(out, string(b))
	}
	return out
}

func kinds(lines []string, kind string) int {
	return strings.Count(strings.Join(lines, "\n"), `"kind":"`+kind+`"`)
}

// races counts the incidents of one race type.
func races(lines []string, race int) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, `"kind":"incident"`) && strings.Contains(l, fmt.Sprintf(`"race":%d,`, race)) {
			n++
		}
	}
	return n
}

// A capture cut short reports every incident before the cut, then the
// summary, then one line saying it was truncated; exit status 4.
func TestReportTruncatedCapture(t *testing.T) {
	data := lookups(t, 3)
	code, stdout, stderr := reportBytes(t, data[:len(data)-40], "-o", "json") // into the trailer
	if code != exitTruncated {
		t.Fatalf("exit %d, want %d: %s", code, exitTruncated, stderr)
	}
	oneLine(t, stderr)
	if !strings.Contains(stderr, "capture truncated after 22 records") {
		t.Errorf("stderr %q", stderr)
	}
	lines := reported(t, stdout)
	if n := kinds(lines, "incident"); n != 3 {
		t.Errorf("%d incidents, want 3", n)
	}
	if !strings.Contains(lines[len(lines)-1], `"kind":"summary"`) || !strings.Contains(lines[len(lines)-1], `"incidents":3`) {
		t.Errorf("the report does not end with a summary of 3 incidents: %s", lines[len(lines)-1])
	}
	// Cut into the last record, the loser's confirm: its race is not
	// invented.
	_, stdout, _ = reportBytes(t, data[:len(data)-100], "-o", "json")
	if n := races(reported(t, stdout), 3); n != 2 {
		t.Errorf("cut in the last record: %d race-3 incidents, want 2:\n%s", n, stdout)
	}
}

// A capture cut before its trailer has no kernel counters. Selecting its
// netns keeps counters comparable, so the summary says they were not read
// rather than blaming the selection, which it does for a partial one.
func TestReportTruncatedCaptureCounters(t *testing.T) {
	data := lookups(t, 3)
	cut := data[:len(data)-40] // into the trailer
	_, stdout, _ := reportBytes(t, cut, "-o", "json")
	var netns string
	for _, l := range reported(t, stdout) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err == nil && m["kind"] == "incident" {
			netns = strconv.FormatUint(uint64(m["netns"].(float64)), 10)
			break
		}
	}
	if netns == "" {
		t.Fatalf("no incident in the report:\n%s", stdout)
	}
	const blamed = "the selection picks some"
	for _, c := range []struct {
		args   []string
		blames bool
	}{
		{[]string{"--netns", netns}, false},
		{[]string{"--race", "3"}, true},
	} {
		code, out, stderr := reportBytes(t, cut, append([]string{"--no-color"}, c.args...)...)
		if code != exitTruncated {
			t.Fatalf("%v: exit %d, want %d: %s", c.args, code, exitTruncated, stderr)
		}
		if got := strings.Contains(out, blamed); got != c.blames {
			t.Errorf("%v: the summary blames the selection: %v, want %v:\n%s", c.args, got, c.blames, out)
		}
		if !c.blames && !strings.Contains(out, "netns "+netns+"  not read") {
			t.Errorf("%v: the summary does not say netns %s's counters were not read:\n%s", c.args, netns, out)
		}
	}
}

// One damaged byte in the last record: everything before it is reported,
// with the incidents the correlator still held, then the summary, then
// the error; exit status 5. It used to print no incident at all.
func TestReportCorruptCapture(t *testing.T) {
	data := lookups(t, 3)
	bad := bytes.Clone(data)
	bad[len(bad)-100] ^= 0xff
	code, stdout, stderr := reportBytes(t, bad, "-o", "json")
	if code != exitCorrupt {
		t.Fatalf("exit %d, want %d: %s", code, exitCorrupt, stderr)
	}
	oneLine(t, stderr)
	if !strings.Contains(stderr, "capture corrupt at byte") || !strings.Contains(stderr, "after 21 good records") {
		t.Errorf("stderr %q", stderr)
	}
	lines := reported(t, stdout)
	if n := races(lines, 3); n != 2 || kinds(lines, "incident") != 3 {
		t.Errorf("%d incidents, %d of race 3; want 3, 2 of race 3 (the last lacks the loser's confirm)", kinds(lines, "incident"), n)
	}
	if kinds(lines, "summary") != 1 || !strings.Contains(lines[len(lines)-1], `"kind":"summary"`) {
		t.Errorf("no summary at the end:\n%s", stdout)
	}
	// Text says the same, with the error last on stderr.
	code, text, stderr := reportBytes(t, bad, "--no-color")
	if code != exitCorrupt || !strings.Contains(text, "ctprobe summary (final)") || strings.Count(text, "race 3 (DNAT chose different endpoints) —") != 2 {
		t.Errorf("text report: exit %d:\n%s%s", code, text, stderr)
	}
}

// frameStarts are the offsets where a capture's preamble and frames begin.
func frameStarts(t *testing.T, data []byte) []int {
	t.Helper()
	r, err := capture.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	starts := []int{0, 24}
	end := 0
	for {
		rec, err := r.Next()
		if err != nil {
			break
		}
		starts = append(starts, int(rec.Offset))
		end = int(rec.Offset) + 9 + 4 + 8 + len(rec.Raw)
		if rec.Type == capture.TypeLost {
			end = int(rec.Offset) + 9 + 4 + 12 + len(rec.Kind)
		}
	}
	return append(starts, end) // the trailer
}

// readRecords reads data as report does and says how far it got: the
// records before the error, and the error's exit status.
func readRecords(data []byte) (records int, status int) {
	r, err := capture.NewReader(bytes.NewReader(data))
	for err == nil {
		if _, err = r.Next(); err == nil {
			records++
		}
	}
	return records, run0(err)
}

// run0 is the exit status run gives err (0 for the end of a whole capture).
func run0(err error) int {
	if errors.Is(err, io.EOF) {
		return 0
	}
	switch {
	case errors.Is(err, capture.ErrTruncated):
		return exitTruncated
	case errors.Is(err, capture.ErrCorrupt):
		return exitCorrupt
	}
	return 1
}

// Cuts and damaged bytes of a capture: no panic, output free of control
// bytes, one error line, the documented exit status, and for damage
// exactly the report of the same file cut where the damaged frame starts:
// every incident before it, and the summary. The reader is checked at every
// byte; the whole report (about 0.1 s each, most of it the correlator's
// tables) at the bytes that decide a frame's fate: its length, its
// payload and its payload checksum, and cuts at and inside
// every frame.
func TestReportDamageCorpus(t *testing.T) {
	data := lookups(t, 3)
	starts := append(frameStarts(t, data), len(data))
	frameOf := func(i int) int {
		f := 0
		for f+1 < len(starts) && starts[f+1] <= i {
			f++
		}
		return starts[f]
	}
	// Every byte, at the reader.
	for i := range data {
		bad := bytes.Clone(data)
		bad[i] ^= 0xff
		n, status := readRecords(bad)
		cutN, _ := readRecords(data[:frameOf(i)])
		want := exitCorrupt
		if i < 10 {
			want = 1 // magic or version: not a capture this ctprobe reads
		}
		if n != cutN || status != want {
			t.Fatalf("byte %d damaged: %d records, status %d; cut at its frame (%d): %d records; want status %d", i, n, status, frameOf(i), cutN, want)
		}
		if n, status := readRecords(data[:i]); status != map[bool]int{true: 1, false: exitTruncated}[i == 0] || n > cutN {
			t.Fatalf("cut at %d: %d records, status %d", i, n, status)
		}
	}

	// The whole report, at the bytes that decide.
	check := func(what string, code int, stdout, stderr string) []string {
		t.Helper()
		if c := rendertest.FirstControl([]byte(stdout + stderr)); c != "" {
			t.Fatalf("%s: %s", what, c)
		}
		if code != 0 {
			oneLine(t, stderr)
		}
		lines := reported(t, stdout)
		if len(lines) > 0 && (kinds(lines, "summary") != 1 || !strings.Contains(lines[len(lines)-1], `"kind":"summary"`)) {
			t.Fatalf("%s: the report does not end with its summary:\n%s", what, stdout)
		}
		return lines
	}
	cuts := map[int][]string{}
	cut := func(at int) []string {
		if lines, ok := cuts[at]; ok {
			return lines
		}
		code, stdout, stderr := reportBytes(t, data[:at], "-o", "json")
		if _, want := readRecords(data[:at]); code != want {
			t.Fatalf("cut at %d: exit %d, want %d: %s", at, code, want, stderr)
		}
		cuts[at] = check(fmt.Sprintf("cut at %d", at), code, stdout, stderr)
		return cuts[at]
	}
	incidents := 0
	for f := 0; f+1 < len(starts); f++ {
		start, end := starts[f], starts[f+1]
		if n := kinds(cut(start), "incident"); n < incidents {
			t.Fatalf("cut at %d: %d incidents, fewer than a shorter cut", start, n)
		} else {
			incidents = n
		}
		cut((start + end) / 2)
		for _, i := range []int{start, (start + end) / 2, end - 1} {
			bad := bytes.Clone(data)
			bad[i] ^= 0xff
			code, stdout, stderr := reportBytes(t, bad, "-o", "json")
			what := fmt.Sprintf("byte %d damaged", i)
			if _, want := readRecords(bad); code != want {
				t.Fatalf("%s: exit %d, want %d: %s", what, code, want, stderr)
			}
			if got := check(what, code, stdout, stderr); strings.Join(got, "\n") != strings.Join(cut(start), "\n") {
				t.Fatalf("%s: report differs from the capture cut at %d, where the damaged frame starts:\n%s\nvs\n%s",
					what, start, strings.Join(got, "\n"), strings.Join(cut(start), "\n"))
			}
		}
	}
	if code, whole, _ := reportBytes(t, data, "-o", "json"); code != 0 || kinds(reported(t, whole), "incident") != 3 || incidents != 3 {
		t.Fatalf("whole capture: exit %d, %d incidents in the last cut:\n%s", code, incidents, whole)
	}
}

// A capture from a big-endian machine is refused, not misread.
func TestReportBigEndianCapture(t *testing.T) {
	data := lookups(t, 1)
	data[10] = 'B'
	crc := crc32.Checksum(data[:20], crc32.MakeTable(crc32.Castagnoli))
	data[20], data[21], data[22], data[23] = byte(crc), byte(crc>>8), byte(crc>>16), byte(crc>>24)
	code, stdout, stderr := reportBytes(t, data, "-o", "json")
	if code != 1 || stdout != "" {
		t.Errorf("exit %d, stdout %q", code, stdout)
	}
	oneLine(t, stderr)
	if !strings.Contains(stderr, "capture records are big-endian") || !strings.Contains(stderr, "this ctprobe decodes little-endian records only") {
		t.Errorf("stderr %q", stderr)
	}
}

// Loss counts from a capture add up without wrapping.
func TestReportLostCountsSaturate(t *testing.T) {
	var buf bytes.Buffer
	w, _ := capture.NewWriter(&buf, capture.Header{RecordLayout: probe.RecordLayout, RecordSize: uint32(event.Size), Mode: mode.Default.CaptureName()})
	w.WriteLost(-1, math.MaxUint64, "ringbuf")
	w.WriteLost(-1, 5, "ringbuf")
	w.WriteLost(-1, 7, "no-entry")
	w.Close(capture.Trailer{})
	max := strconv.FormatUint(math.MaxUint64, 10)
	code, stdout, stderr := reportBytes(t, buf.Bytes(), "-o", "json")
	if code != 0 || !strings.Contains(stdout, `"lost":{"total":`+max+`,"by_source":{"kretprobe-missed":0,"no-entry":7,"no-history":0,"recursion-missed":0,"ringbuf":`+max+`}}`) {
		t.Errorf("exit %d: %s%s", code, stdout, stderr)
	}
	_, text, _ := reportBytes(t, buf.Bytes(), "--no-color")
	if !strings.Contains(text, "lost "+max+" records (ringbuf "+max+", no-entry 7)") {
		t.Errorf("text:\n%s", text)
	}
}

// `report -r -` on a valid prefix followed by an endless stream of zeros
// ends, reports the prefix with its summary, and says the capture is
// corrupt (it read until killed).
func TestReportEndlessZerosOnStdin(t *testing.T) {
	data := lookups(t, 2)
	cut := frameStarts(t, data)[9] // a frame boundary inside the records
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin := os.Stdin
	os.Stdin = r
	defer func() { os.Stdin = stdin; r.Close() }()
	go func() {
		defer w.Close()
		if _, err := w.Write(data[:cut]); err != nil {
			return
		}
		zeros := make([]byte, 1<<16)
		for {
			if _, err := w.Write(zeros); err != nil {
				return // the reader is done
			}
		}
	}()
	code, stdout, stderr := runCLI("report", "-r", "-", "-o", "json")
	if code != exitCorrupt || !strings.Contains(stderr, "MiB of zeros") {
		t.Fatalf("exit %d, want %d: %s", code, exitCorrupt, stderr)
	}
	if lines := reported(t, stdout); kinds(lines, "summary") != 1 || kinds(lines, "event") != 7 {
		t.Errorf("want the 7 records before the zeros and a summary:\n%s", stdout)
	}
}
