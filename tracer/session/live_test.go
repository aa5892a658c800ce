package session

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ctprobe/ctprobe/tracer/capture"
	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/event/eventtest"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/mode"
	"github.com/ctprobe/ctprobe/tracer/names"
	"github.com/ctprobe/ctprobe/tracer/names/namestest"
	"github.com/ctprobe/ctprobe/tracer/plan"
	"github.com/ctprobe/ctprobe/tracer/probe"
	"github.com/ctprobe/ctprobe/tracer/render"
	"github.com/ctprobe/ctprobe/tracer/stream"
)

// The parts of the live-like run below: their times (kernel ns; Race3's
// argument is milliseconds) and network namespaces.
const (
	ms        = uint64(time.Millisecond)
	raceA     = 0          // eventtest.Race3(0)
	raceB     = 1000       // eventtest.Race3(1000): 1 s later
	findingsC = 2000 * ms  // inserts that fail, from a pod
	podNetns  = 4026532170 // the pod's; eventtest's records are the host's
	podUID    = "33333333-3333-4333-8333-333333333333"
	hostNetns = 4026532201 // eventtest.Race3's
)

// insert is a confirm at time ts of a flow from src:sport, sent from a
// softirq of netns: an ordinary insert, or one that failed (a finding:
// nf_ct_resolve_clash is probed).
func insert(ts uint64, netns uint32, src string, sport uint16, verdict uint32) []byte {
	return eventtest.Record(probe.BPFEvent{Ts: ts, Kind: uint8(event.Confirm), Ct: 0xffff888100000000 + ts, Netns: netns, Hook: event.HookNone,
		Orig: eventtest.Tuple(src, sport, "10.244.2.1", 53), Reply: eventtest.Tuple("10.244.2.1", 53, src, sport),
		Ret: verdict, Status: event.StatusConfirmed})
}

// step is a record the ring buffer delivered, or (raw nil) an idle of the
// reader at kernel time at.
type step struct {
	raw []byte
	at  uint64
}

func records(raws ...[]byte) []step {
	var out []step
	for _, r := range raws {
		out = append(out, step{raw: r})
	}
	return out
}

// liveRun is what a live trace --all read, in order, on a machine where
// records came late (as under QEMU): each part differed between the live
// run and the report of its capture before the capture kept the reader's
// idles and the pipeline looked a key's names up once per batch.
func liveRun() []step {
	a, b := eventtest.Race3(raceA, "getent"), eventtest.Race3(raceB, "getent")
	var run []step
	// A: the loser's confirm, then an idle that completes its incident,
	// then its winner's insert, later than the reorder window: the report
	// must complete the incident without it too.
	run = append(run, records(a[0], a[1], a[2], a[3], a[5], a[6])...)
	run = append(run, step{at: 300 * ms})
	run = append(run, records(a[4])...)
	// B: an idle that only moves the clock, after the clash; the loser's
	// confirm comes after it and waits the reorder window from there, so
	// an insert 100 ms later does not complete it and its winner's insert,
	// read next, is in it. The report must wait as long.
	run = append(run, records(b[0], b[1], b[2], b[3], b[5])...)
	run = append(run, step{at: 1300 * ms})
	run = append(run, records(b[6], insert(1100*ms, hostNetns, "10.244.1.7", 7000, event.VerdictAccept), b[4])...)
	// C: two inserts from a pod fail; an idle completes both findings.
	// The first lookup of the pod's netns misses and starts a refresh,
	// which lands before the second (sameBatchRefresh): both must get
	// the same names, which the report gives too. A third, later, is named.
	run = append(run, records(
		insert(findingsC, podNetns, "10.244.1.9", 5001, event.VerdictDrop),
		insert(findingsC+ms, podNetns, "10.244.1.9", 5002, event.VerdictDrop))...)
	run = append(run, step{at: findingsC + 300*ms})
	run = append(run, records(
		insert(findingsC+500*ms, podNetns, "10.244.1.9", 5003, event.VerdictDrop),
		insert(findingsC+600*ms, hostNetns, "10.244.1.7", 7001, event.VerdictAccept))...)
	return run
}

// sameBatchRefresh holds the first finding's line until the resolver's
// refresh, which the finding's lookup started, has named the pod's
// network namespace.
type sameBatchRefresh struct {
	render.Renderer
	t    *testing.T
	res  *names.Resolver
	done bool
}

func (s *sameBatchRefresh) Finding(f *incident.Finding) error {
	if !s.done {
		s.done = true
		deadline := time.Now().Add(10 * time.Second)
		for _, ok := s.res.PodOfNetns(podNetns); !ok; _, ok = s.res.PodOfNetns(podNetns) {
			if time.Now().After(deadline) {
				s.t.Fatal("the resolver's refresh never named the pod's netns")
			}
			time.Sleep(time.Millisecond)
		}
	}
	return s.Renderer.Finding(f)
}

// A live trace and the report of its capture print the same events,
// incidents, findings and summary, in the same order, when records come
// late and the reader idles between them (issues 18 and 19).
func TestReportPrintsWhatTheLiveRunPrinted(t *testing.T) {
	root := t.TempDir()
	namestest.Process(t, root, 1, hostNetns, "0::/init.scope\n")
	res := names.Start(names.Options{HostRoot: root, Record: true, Refresh: time.Hour, MinInterval: time.Millisecond})
	t.Cleanup(func() { res.Close() })
	// The pod's process starts after the resolver's first table.
	namestest.Process(t, root, 500, podNetns, "0::/kubepods/besteffort/pod"+podUID+"/"+strings.Repeat("c", 64)+"\n")

	start := time.Unix(1_800_000_000, 0)
	hdr := capture.Header{RecordLayout: probe.RecordLayout, RecordSize: uint32(event.Size), Mode: mode.All.CaptureName(),
		StartUnixNano: start.UnixNano(), BootTimeUnixNano: start.UnixNano() - int64(time.Hour),
		Plan: []plan.Entry{{Point: "clash", Function: "nf_ct_resolve_clash", Status: plan.Attached}}}
	clock := render.Clock{BootTimeUnixNano: hdr.BootTimeUnixNano}
	var file, live bytes.Buffer
	w, err := capture.NewWriter(&file, hdr)
	if err != nil {
		t.Fatal(err)
	}
	out := &sameBatchRefresh{Renderer: render.NewJSON(&live, render.Options{Clock: clock}), t: t, res: res}
	l := newLiveStream(stream.New(out, true, start, true), w, res)
	for _, s := range liveRun() {
		if s.raw == nil {
			err = l.idle(s.at)
		} else {
			var ev event.Event
			if err := event.Decode(s.raw, &ev); err != nil {
				t.Fatal(err)
			}
			err = l.record(s.raw, ev.Time+ms)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	end := start.Add(5 * time.Second)
	if _, err := l.finish(end, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(capture.Trailer{EndUnixNano: end.UnixNano()}); err != nil {
		t.Fatal(err)
	}
	if err := out.Flush(); err != nil {
		t.Fatal(err)
	}

	rd, err := capture.NewReader(&file)
	if err != nil {
		t.Fatal(err)
	}
	var report bytes.Buffer
	rr := render.NewJSON(&report, render.Options{Clock: clock})
	if _, err := Replay(rd, rr, ReplayOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	if err := rr.Flush(); err != nil {
		t.Fatal(err)
	}

	want, got := outputLines(t, live.Bytes()), outputLines(t, report.Bytes())
	for i := range min(len(want), len(got)) {
		if want[i] != got[i] {
			t.Fatalf("line %d differs:\nlive:   %s\nreport: %s", i+1, want[i], got[i])
		}
	}
	if len(want) != len(got) {
		t.Fatalf("the live run printed %d lines, the report %d", len(want), len(got))
	}
	checkLiveRun(t, want)
}

// outputLines are the event, incident, finding and summary lines of JSON
// output (the header and plan lines say whether they are a report's).
func outputLines(t *testing.T, out []byte) []string {
	var kept []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var m struct{ Kind string }
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		switch m.Kind {
		case "event", "incident", "finding", "summary":
			kept = append(kept, l)
		}
	}
	return kept
}

// checkLiveRun checks that liveRun's parts happened as it says.
func checkLiveRun(t *testing.T, lines []string) {
	type packet struct {
		Timeline []struct{ Stage string }
		Pod      *names.Pod
	}
	type line struct {
		Kind         string
		Winner, Flow packet
	}
	var incidents, findings []line
	for _, l := range lines {
		var m line
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		switch m.Kind {
		case "incident":
			incidents = append(incidents, m)
		case "finding":
			findings = append(findings, m)
		}
	}
	if len(incidents) != 2 || len(findings) != 3 {
		t.Fatalf("%d incidents and %d findings, want 2 races and 3 failed inserts:\n%s", len(incidents), len(findings), strings.Join(lines, "\n"))
	}
	confirmed := func(p packet) bool {
		return slices.ContainsFunc(p.Timeline, func(s struct{ Stage string }) bool { return s.Stage == "confirm" })
	}
	if confirmed(incidents[0].Winner) {
		t.Errorf("race A: the winner's insert is in the incident, but it came after the idle that completed it")
	}
	if !confirmed(incidents[1].Winner) {
		t.Errorf("race B: the winner's insert, which came just after its loser's confirm, is not in the incident")
	}
	if findings[0].Flow.Pod != nil || findings[1].Flow.Pod != nil {
		t.Errorf("findings completed at one idle named %+v and %+v, want both unnamed, as the first lookup answered", findings[0].Flow.Pod, findings[1].Flow.Pod)
	}
	if p := findings[2].Flow.Pod; p == nil || p.UID != podUID {
		t.Errorf("the third finding is named %+v, want pod %s", p, podUID)
	}
}
