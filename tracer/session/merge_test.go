package session

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ctprobe/ctprobe/tracer/capture"
	"github.com/ctprobe/ctprobe/tracer/render"
	"github.com/ctprobe/ctprobe/tracer/stream/streamtest"
)

// With --all, a report of several nodes writes every event line of each,
// then the summary: each file's renderer holds event lines back
// (render.Renderer.Flush) and only the summary's renderer ends the report,
// so the merge flushes each line as it writes it. Two synthetic nodes of
// ordinary --all traffic, without an incident, whose line would write the
// held ones.
func TestReplayNodesWritesHeldEvents(t *testing.T) {
	opt := streamtest.OrdinaryAllNode()
	opt.Flows, opt.Live = 400, 100
	var nodes []NodeCaptures
	want := map[string]int{}
	for i, node := range []string{"node-a", "node-b"} {
		opt.Seed = uint64(i + 1)
		s, err := streamtest.Synthesize(opt)
		if err != nil {
			t.Fatal(err)
		}
		rd, err := capture.NewReader(bytes.NewReader(s.File))
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, NodeCaptures{Node: node, Files: []CaptureFile{{Path: node, Reader: rd}}})
		want[node] = len(s.Records)
	}
	var out bytes.Buffer
	fileRenderer := func(node string, at *CaptureTime, hdr *capture.Header) render.Renderer {
		return render.NewJSON(&out, render.Options{Clock: render.Clock{BootTimeUnixNano: hdr.BootTimeUnixNano}, Now: at.Now, Node: node})
	}
	if _, err := ReplayNodes(nodes, ReplayOptions{All: true}, fileRenderer, render.NewJSON(&out, render.Options{})); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	got := map[string]int{}
	for _, l := range lines {
		for node := range want {
			if strings.Contains(l, `"kind":"event"`) && strings.Contains(l, `"node":"`+node+`"`) {
				got[node]++
			}
		}
	}
	for node, n := range want {
		if got[node] != n || n < 400 {
			t.Errorf("%s: %d event lines of %d records", node, got[node], n)
		}
	}
	if last := lines[len(lines)-1]; !strings.Contains(last, `"kind":"summary"`) {
		t.Errorf("the last line is not the summary: %.100s", last)
	}
}
