package stream

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/event/eventtest"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/names"
	"github.com/ctprobe/ctprobe/tracer/names/namestest"
	"github.com/ctprobe/ctprobe/tracer/probe"
	"github.com/ctprobe/ctprobe/tracer/render"
	"github.com/ctprobe/ctprobe/tracer/stream/streamtest"
)

// synthPods is the synthetic node's pods as a runtime lists them; pod n
// sends from 10.244.1.(2+n) as PID 1000+37n (streamtest's pods).
type synthPods struct{}

func (synthPods) List(context.Context) (names.State, error) {
	var st names.State
	for n := 0; n < 60; n++ {
		sb, ctr := fmt.Sprintf("%064x", n), fmt.Sprintf("%064x", 1<<20+n)
		st.Sandboxes = append(st.Sandboxes, names.Sandbox{ID: sb, Pod: synthPod(n), IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 244, 1, byte(2 + n)})}})
		st.Containers = append(st.Containers, names.Container{ID: ctr, Name: "app", SandboxID: sb})
	}
	return st, nil
}
func (synthPods) String() string { return "synthetic" }
func (synthPods) Close() error   { return nil }

func synthPod(n int) names.Pod {
	return names.Pod{Namespace: "default", Name: fmt.Sprint("pod-", n), UID: fmt.Sprintf("%08x-0000-4000-8000-000000000000", n)}
}

// namedNode is a Resolver over a host root whose /proc holds the synthetic
// node's senders in their pods' cgroups.
func namedNode(tb testing.TB) *names.Resolver {
	root := tb.TempDir()
	namestest.Process(tb, root, 1, streamtest.HostNetns, "0::/init.scope\n")
	for n := 0; n < 60; n++ {
		namestest.Process(tb, root, 1000+37*n, uint64(4026533000+n), fmt.Sprintf("0::/kubepods/besteffort/pod%s/%064x\n", synthPod(n).UID, 1<<20+n))
	}
	r := names.Start(names.Options{HostRoot: root, Runtime: synthPods{}, Record: true})
	tb.Cleanup(func() { r.Close() })
	return r
}

// collect keeps the incidents and findings a Processor renders.
type collect struct {
	render.Discard
	incidents []incident.Incident
	findings  []incident.Finding
}

func (c *collect) Incident(inc *incident.Incident) error {
	c.incidents = append(c.incidents, *inc)
	return nil
}

// Names are looked up per incident only: the ordinary traffic of a busy
// node still allocates nothing through a Processor that names pods, and
// every incident of the race mix names its loser's pod by the sender or
// the source address.
func TestProcessorNamesOnlyIncidents(t *testing.T) {
	res := namedNode(t)
	s, err := streamtest.Synthesize(streamtest.OrdinaryNode())
	if err != nil {
		t.Fatal(err)
	}
	records := s.CopyRecords()
	p := New(render.Discard{}, false, time.Unix(0, 0), true)
	p.SetNames(res)
	pass := func() {
		for _, r := range records {
			if err := p.Record(r); err != nil {
				t.Fatal(err)
			}
		}
		s.Advance(records)
	}
	pass()
	if allocs := testing.AllocsPerRun(2, pass); allocs != 0 {
		t.Errorf("%v allocations per pass of %d ordinary events with names on", allocs, len(records))
	}

	var c collect
	busy := streamtest.BusyCapture(t)
	p = New(&c, false, time.Unix(0, 0), true)
	p.SetNames(res)
	for _, r := range busy.CopyRecords() {
		if err := p.Record(r); err != nil {
			t.Fatal(err)
		}
	}
	named := 0
	for _, inc := range c.incidents {
		L := &inc.Loser
		a := L.Orig.Src.As16()
		if !L.Orig.Src.Is4() || a[12] != 10 || a[13] != 244 || a[14] != 1 {
			continue // not from one of the pods
		}
		want := synthPod(int(a[15]) - 2)
		if L.Names.Pod != want {
			t.Errorf("loser from %s named %+v, want %+v", L.Orig.Src, L.Names.Pod, want)
		}
		if L.Task && L.Names.Container != "app" {
			t.Errorf("loser sent by pid %d: container %q", L.PID, L.Names.Container)
		}
		named++
	}
	if named == 0 {
		t.Error("no incident from a pod in the race mix")
	}
}

func (c *collect) Finding(f *incident.Finding) error {
	c.findings = append(c.findings, *f)
	return nil
}

// A finding's flow is named like an incident's packets: a pod's query
// dropped at confirm without a clash (a chain too long) names the pod that
// sent it, by its sender and by its address.
func TestProcessorNamesFindings(t *testing.T) {
	res := namedNode(t)
	const pod = 3
	src := fmt.Sprint("10.244.1.", 2+pod)
	for _, task := range []bool{true, false} {
		e := probe.BPFEvent{Ts: 1000, Kind: uint8(event.Confirm), Ct: 0xffff888004a1b200, Netns: uint32(4026533000 + pod),
			Hook: event.HookNone, Orig: eventtest.Tuple(src, 41000, "10.96.0.10", 53), Reply: eventtest.Tuple("10.244.2.1", 53, src, 41000),
			Ret: event.VerdictDrop}
		if task {
			e.PidTgid = uint64(1000+37*pod)<<32 | uint64(1000+37*pod)
			e.Flags = uint16(event.FlagLocal | event.FlagSock) // a local socket's task
		}
		var c collect
		p := New(&c, false, time.Unix(0, 0), true)
		p.SetNames(res)
		if err := p.Record(eventtest.Record(e)); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Idle(uint64(time.Second)); err != nil {
			t.Fatal(err)
		}
		if len(c.findings) != 1 {
			t.Fatalf("task %v: %d findings, want the insert that failed", task, len(c.findings))
		}
		got := c.findings[0].Flow.Names
		if got.Pod != synthPod(pod) || task && got.Container != "app" {
			t.Errorf("task %v: finding's flow named %+v, want pod %+v (container app when the sender is known)", task, got, synthPod(pod))
		}
	}
}
