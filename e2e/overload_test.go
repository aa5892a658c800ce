package e2e

import (
	"encoding/json"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/ctprobe/ctprobe/lab"
	"github.com/ctprobe/ctprobe/tracer/capture"
	"github.com/ctprobe/ctprobe/tracer/render"
	"github.com/ctprobe/ctprobe/tracer/session"
)

// captureCounts is what one capture file says about its records: the
// samples and loss notes it holds, and the trailer's accounting.
type captureCounts struct {
	samples   uint64            // sample frames
	lostNotes map[string]uint64 // loss-note counts by kind
	trailer   *capture.Trailer
	// The kernel's count of records offered to the ring buffer, and the
	// tracer's counts of those read and those lost (trailer Extra).
	sent, received, lost uint64
	// Calls that ran inside another under one key, each paired with its
	// own entry (trailer Extra).
	nested uint64
}

// readCapture replays a capture through the session, as `ctprobe report`
// does, and reads its trailer's accounting.
func readCapture(t *testing.T, path string) captureCounts {
	t.Helper()
	r, err := capture.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := session.Replay(r, render.Discard{}, session.ReplayOptions{}, nil)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	c := captureCounts{samples: got.Records, lostNotes: map[string]uint64{}, trailer: got.Trailer}
	for kind, n := range got.Summary.Lost {
		c.lostNotes[string(kind)] = n
	}
	if c.trailer == nil {
		t.Fatalf("%s has no trailer: the tracer did not stop cleanly", path)
	}
	for key, dst := range map[string]*uint64{"records_sent": &c.sent, "records_received": &c.received, "records_lost": &c.lost, "calls_nested": &c.nested} {
		v, ok := c.trailer.Extra[key]
		if !ok {
			t.Fatalf("%s: trailer lacks %s: %v", path, key, c.trailer.Extra)
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s: trailer %s=%q: %v", path, key, v, err)
		}
		*dst = n
	}
	return c
}

// traceLosses reads a `ctprobe trace -o json` stream: the counts of its
// "lost" lines by source, its final summary's lost totals, and its warnings.
func traceLosses(t *testing.T, path string) (lines map[string]uint64, summary map[string]uint64, warnings []string) {
	t.Helper()
	raw, parsed := jsonLines(t, path)
	lines = map[string]uint64{}
	finals := 0
	for i, m := range parsed {
		switch m["kind"] {
		case "lost":
			var l struct {
				Source string `json:"source"`
				Count  uint64 `json:"count"`
			}
			if err := json.Unmarshal([]byte(raw[i]), &l); err != nil {
				t.Fatal(err)
			}
			lines[l.Source] += l.Count
		case "warning":
			warnings = append(warnings, m["message"].(string))
		case "summary":
			var s struct {
				Final bool `json:"final"`
				Lost  struct {
					Total    uint64            `json:"total"`
					BySource map[string]uint64 `json:"by_source"`
				} `json:"lost"`
			}
			if err := json.Unmarshal([]byte(raw[i]), &s); err != nil {
				t.Fatal(err)
			}
			if s.Final {
				finals++
				summary = s.Lost.BySource
			}
		}
	}
	if finals != 1 {
		t.Fatalf("%s: %d final summaries", path, finals)
	}
	return lines, summary, warnings
}

// checkOverload checks the guest's overload section: ring-buffer losses are
// counted exactly, in the capture trailer (sent = received + lost), in the
// capture's loss notes and in the live lost lines and summary; and
// --timeline with the default ring size loses nothing.
func checkOverload(t *testing.T, out string) {
	p := func(name string) string { return filepath.Join(out, name) }
	if rc := readFile(t, p("overload.flood.rc")); rc != "0" {
		t.Fatalf("ctlab flood exit %s: %s", rc, readFile(t, p("overload.flood.err")))
	}
	var flood lab.FloodStats
	readJSON(t, p("overload.flood.json"), &flood)
	if flood.Flows == 0 {
		t.Fatalf("the flood sent nothing: %+v", flood)
	}
	t.Logf("flood: %d new flows in %v (%.0f/s) with two tracers attached", flood.Flows, flood.Duration, flood.Rate)

	t.Run("overload", func(t *testing.T) {
		if rc := readFile(t, p("overload.trace.rc")); rc != "0" {
			t.Fatalf("ctprobe trace --all --timeline --ring-size 4096 exit %s: %s", rc, readFile(t, p("overload.trace.err")))
		}
		c := readCapture(t, p("overload.ctp"))
		t.Logf("--ring-size 4096: sent %d, received %d, lost %d", c.sent, c.received, c.lost)
		// Every probe's records, under a flood: each must be whole.
		raw, events := jsonLines(t, p("overload.trace.jsonl"))
		if n := checkEventRecords(t, raw, events); uint64(n) != c.received {
			t.Errorf("%d event lines, %d records received", n, c.received)
		}
		if c.lost == 0 {
			t.Errorf("a one-page ring buffer lost nothing in a flood of %d flows: the overload was not provoked", flood.Flows)
		}
		if c.sent != c.received+c.lost {
			t.Errorf("sent %d != received %d + lost %d: %d records unaccounted", c.sent, c.received, c.lost, int64(c.sent)-int64(c.received+c.lost))
		}
		if c.samples != c.received {
			t.Errorf("capture holds %d samples, the trailer says %d were received", c.samples, c.received)
		}
		if c.lostNotes["ringbuf"] != c.lost || c.trailer.Lost["ringbuf"] != c.lost {
			t.Errorf("ring-buffer losses: capture notes %d, trailer %d, records_lost %d", c.lostNotes["ringbuf"], c.trailer.Lost["ringbuf"], c.lost)
		}
		lines, summary, warnings := traceLosses(t, p("overload.trace.jsonl"))
		if lines["ringbuf"] != c.lost {
			t.Errorf("live lost lines count %d ring-buffer losses, want %d", lines["ringbuf"], c.lost)
		}
		if summary["ringbuf"] != c.lost {
			t.Errorf("final summary counts %d ring-buffer losses, want %d", summary["ringbuf"], c.lost)
		}
		// Losses are reported as lost records, never as a warning (such as
		// unaccounted records or undecodable ones).
		for _, w := range warnings {
			t.Errorf("trace warned: %s", w)
		}
	})

	t.Run("moderate", func(t *testing.T) {
		if rc := readFile(t, p("moderate.trace.rc")); rc != "0" {
			t.Fatalf("ctprobe trace exit %s: %s", rc, readFile(t, p("moderate.trace.err")))
		}
		if rc := readFile(t, p("overload.lab.rc")); rc != "0" {
			t.Fatalf("ctlab run exit %s: %s", rc, readFile(t, p("overload.lab.err")))
		}
		c := readCapture(t, p("moderate.ctp"))
		t.Logf("--timeline, default ring size: sent %d, received %d, lost %d", c.sent, c.received, c.lost)
		if c.lost != 0 || c.sent != c.received || c.samples != c.received {
			t.Errorf("sent %d, received %d, lost %d, %d samples in the capture: want no loss and sent = received", c.sent, c.received, c.lost, c.samples)
		}
		var stats lab.Stats
		readJSON(t, p("overload.lab.json"), &stats)
		var clashes uint64
		for _, ns := range stats.Netns {
			clashes += ns.Delta.Clashes()
		}
		if clashes > 0 && c.sent == 0 {
			t.Errorf("the kernel counted %d clashes in %d lookups and --timeline sent no record", clashes, stats.Lookups)
		}
		lines, summary, _ := traceLosses(t, p("moderate.trace.jsonl"))
		if lines["ringbuf"] != 0 || summary["ringbuf"] != 0 {
			t.Errorf("ring-buffer losses reported: lost lines %d, summary %d", lines["ringbuf"], summary["ringbuf"])
		}
	})

	// The default mode probes only the clash path: through a flood of new
	// flows it sends nothing, and for each clash its two records (the
	// clash and the loser's verdict).
	t.Run("quiet", func(t *testing.T) {
		if rc := readFile(t, p("quiet.trace.rc")); rc != "0" {
			t.Fatalf("ctprobe trace exit %s: %s", rc, readFile(t, p("quiet.trace.err")))
		}
		c := readCapture(t, p("quiet.ctp"))
		_, lines := jsonLines(t, p("quiet.trace.jsonl"))
		incidents := 0
		for _, m := range lines {
			if m["kind"] == "incident" {
				incidents++
			}
		}
		t.Logf("default mode: %d incidents, records sent %d, received %d, lost %d", incidents, c.sent, c.received, c.lost)
		if c.lost != 0 || c.sent != c.received || c.sent != uint64(2*incidents) || incidents == 0 {
			t.Errorf("%d incidents, %d records sent, %d received, %d lost: want two records per incident, at least one incident, nothing lost",
				incidents, c.sent, c.received, c.lost)
		}
	})
}
