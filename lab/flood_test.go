package lab

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestFloodOptionsValidate(t *testing.T) {
	for _, o := range []FloodOptions{
		{},
		{Duration: -time.Second},
		{Duration: time.Second, Threads: -1},
		{Duration: time.Second, Threads: MaxFloodThreads + 1},
		{Duration: time.Second, Rate: -1},
	} {
		if err := o.validate(); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
	o := FloodOptions{Duration: time.Second}
	if err := o.validate(); err != nil || o.Threads != 1 {
		t.Errorf("defaults: %v, threads %d", err, o.Threads)
	}
}

// The flood's datagram parses as DNS but is a response, which the lab's
// responders ignore: no reply comes back.
func TestFloodPayload(t *testing.T) {
	b, err := floodPayload(DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Response() || len(m.Questions) != 1 || m.Questions[0].Name != DefaultName {
		t.Errorf("payload %+v", m)
	}
}

func nodeStats(t *testing.T, netns []NetnsStats) NetnsStats {
	t.Helper()
	for _, ns := range netns {
		if ns.Role == "node" {
			return ns
		}
	}
	t.Fatalf("no node netns in %+v", netns)
	return NetnsStats{}
}

func TestFlood(t *testing.T) {
	topo := setup(t, "endpoints-2", "iptables", 0)
	served := func() (n uint64) {
		for _, r := range topo.responders {
			n += r.answered.Load()
		}
		return n
	}
	before := served()
	st, err := topo.Flood(context.Background(), FloodOptions{Duration: 300 * time.Millisecond, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	if st.Flows == 0 || st.Errors != 0 || st.Rate <= 0 || len(st.PerThread) != 2 || len(st.TIDs) != 2 {
		t.Fatalf("flood: %+v", st)
	}
	if st.PerThread[0]+st.PerThread[1] != st.Flows {
		t.Errorf("per thread %v, total %d", st.PerThread, st.Flows)
	}
	if st.Duration < 300*time.Millisecond || st.Duration > 5*time.Second {
		t.Errorf("duration %v", st.Duration)
	}
	// Every flow is a new conntrack entry in the node (unreplied UDP
	// entries outlive the test), and no endpoint answered.
	node := nodeStats(t, st.Netns)
	if grown := node.After.Entries - node.Before.Entries; grown < st.Flows || grown > st.Flows+2 {
		t.Errorf("node entries grew by %d for %d flows", grown, st.Flows)
	}
	if node.Delta.Drop != 0 || node.Delta.InsertFailed != 0 {
		t.Errorf("node counters: %+v", node.Delta)
	}
	if n := served() - before; n != 0 {
		t.Errorf("endpoints answered %d flood datagrams", n)
	}
	var text bytes.Buffer
	if err := st.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "flows/s") || !strings.Contains(text.String(), topo.Prefix+"node") {
		t.Errorf("text report:\n%s", text.String())
	}
	t.Logf("%d flows in %v: %.0f/s", st.Flows, st.Duration, st.Rate)

	// A flood stops when every source port was used once.
	if testing.Short() {
		return
	}
	st2, err := topo.Flood(context.Background(), FloodOptions{Duration: 2 * time.Minute, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !st2.PortsExhausted || st2.Flows+st2.PortsInUse+st2.Errors != FloodPorts || st2.Duration > time.Minute {
		t.Errorf("flood until the ports run out: %d flows, %d in use, %d errors, exhausted %v, %v",
			st2.Flows, st2.PortsInUse, st2.Errors, st2.PortsExhausted, st2.Duration)
	}
	// Each flood starts again at FloodFirstPort: the tuples of the first
	// one (and of Setup's check) are still in the table, so those flows
	// are not new; every other one is.
	node2 := nodeStats(t, st2.Netns)
	if got := node2.After.Entries - node2.Before.Entries; got < st2.Flows-st.Flows-2 || got > st2.Flows-st.Flows {
		t.Errorf("node entries grew by %d for %d flows (%d tuples repeated from the first flood)", got, st2.Flows, st.Flows)
	}
}

func TestFloodRate(t *testing.T) {
	topo := setup(t, "endpoints-1", "iptables", 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := topo.Flood(ctx, FloodOptions{Duration: 500 * time.Millisecond, Rate: 100})
	if err != nil {
		t.Fatal(err)
	}
	// 100/s for 0.5 s: flows at 0, 10, ..., 490 ms.
	if st.Flows < 25 || st.Flows > 50 {
		t.Errorf("--rate 100 for 500ms sent %d flows", st.Flows)
	}
}

func TestFloodCancel(t *testing.T) {
	topo := setup(t, "endpoints-1", "iptables", 0)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	st, err := topo.Flood(ctx, FloodOptions{Duration: time.Minute, Rate: 1000})
	if err == nil || time.Since(start) > 5*time.Second {
		t.Errorf("a cancelled flood returned %v after %v", err, time.Since(start))
	}
	if st.Flows == 0 || st.Netns == nil {
		t.Errorf("a cancelled flood reports what it did: %+v", st)
	}
}
