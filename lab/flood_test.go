package lab

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ctprobe/ctprobe/tracer/dnsmsg"
	"github.com/ctprobe/ctprobe/tracer/netns"
)

func TestFloodOptionsValidate(t *testing.T) {
	for _, o := range []FloodOptions{
		{},
		{Duration: -time.Second},
		{Duration: time.Second, Threads: -1},
		{Duration: time.Second, Threads: MaxFloodThreads + 1},
		{Duration: time.Second, Rate: -1},
		{Duration: time.Second, Pin: true, CPU: -1},
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

// A pinned flood's sender threads run on the CPU asked for, and only there;
// a CPU that cannot be had is an error, not an unpinned flood.
func TestFloodPinned(t *testing.T) {
	topo := setup(t, "endpoints-2", "iptables", 0)
	s, err := startSender(topo.byRole[topo.clientRoles()[0]], 0, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.stop()
	var set unix.CPUSet
	if err := s.do(func() error { return unix.SchedGetaffinity(0, &set) }); err != nil {
		t.Fatalf("affinity: %v", err)
	}
	if set.Count() != 1 || !set.IsSet(0) {
		t.Errorf("sender thread's CPUs: %d of them, CPU 0 among them: %v; want CPU 0 alone", set.Count(), set.IsSet(0))
	}

	st, err := topo.Flood(context.Background(), FloodOptions{Duration: 200 * time.Millisecond, Pin: true, CPU: 0})
	if err != nil || st.Flows == 0 {
		t.Errorf("flood pinned to CPU 0: %d flows, %v", st.Flows, err)
	}
	const absent = 1023 // the last CPU a CPUSet can name
	_, err = topo.Flood(context.Background(), FloodOptions{Duration: 200 * time.Millisecond, Pin: true, CPU: absent})
	if err == nil || !strings.Contains(err.Error(), "pin to CPU 1023") {
		t.Errorf("flood pinned to CPU %d: %v; want an error naming the CPU", absent, err)
	}
}

// The flood's datagram parses as DNS but is a response, which the lab's
// responders ignore: no reply comes back.
func TestFloodPayload(t *testing.T) {
	b, err := floodPayload(DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dnsmsg.ParseMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Response() || len(m.Questions) != 1 || m.Questions[0].Name+"." != DefaultName {
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

// The threads' shares cover every source port exactly once; without a hold a
// share ends after one lap.
func TestPortShares(t *testing.T) {
	for _, threads := range []int{1, 2, 7, MaxFloodThreads} {
		seen := make(map[int]int, FloodPorts)
		for i := 0; i < threads; i++ {
			p := newPortShare(i, threads, 0)
			for {
				j, ready, ok := p.take()
				if !ok {
					break
				}
				if !ready.IsZero() {
					t.Fatalf("%d threads: a port that does not wrap waits until %v", threads, ready)
				}
				seen[p.port(j)]++
			}
		}
		if len(seen) != FloodPorts {
			t.Errorf("%d threads: %d distinct ports, want %d", threads, len(seen), FloodPorts)
		}
		for port, n := range seen {
			if n != 1 || port < FloodFirstPort || port > 65535 {
				t.Fatalf("%d threads: port %d used %d times", threads, port, n)
			}
		}
	}
}

// Ports that wrap come round again in the same order, each ready no sooner
// than hold after its previous flow was sent.
func TestPortShareWrap(t *testing.T) {
	const hold = 3 * time.Second
	p := newPortShare(1, 3, hold)
	var first []int
	var before, after []time.Time // around each sent
	for range p.size {
		j, ready, ok := p.take()
		if !ok || !ready.IsZero() {
			t.Fatalf("first lap: ok %v, ready %v", ok, ready)
		}
		first = append(first, p.port(j))
		before = append(before, time.Now())
		p.sent(j)
		after = append(after, time.Now())
	}
	for k := range 3 {
		j, ready, ok := p.take()
		if !ok || p.port(j) != first[k] {
			t.Fatalf("second lap, flow %d: port %d (ok %v), want %d", k, p.port(j), ok, first[k])
		}
		if ready.Before(before[k].Add(hold)) || ready.After(after[k].Add(hold)) {
			t.Errorf("port %d sent between %v and %v is ready at %v: want %v later", first[k], before[k], after[k], ready, hold)
		}
	}
}

func TestSleepUntil(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	if !sleepUntil(ctx, time.Time{}, now) || !sleepUntil(ctx, now.Add(-time.Second), now) {
		t.Error("no wait: the flood goes on")
	}
	if sleepUntil(ctx, now.Add(time.Hour), now.Add(20*time.Millisecond)) || time.Since(now) < 20*time.Millisecond {
		t.Errorf("ready after the deadline: want a wait until the deadline and the end, after %v", time.Since(now))
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if sleepUntil(cctx, time.Now().Add(time.Hour), time.Now().Add(2*time.Hour)) {
		t.Error("a cancelled flood goes on")
	}
}

// readSysctl reads a /proc/sys entry of a netns.
func readSysctl(t *testing.T, ns *Netns, key string) string {
	t.Helper()
	var b []byte
	err := netns.Run(ns.Path, func() (err error) {
		b, err = os.ReadFile("/proc/sys/" + key)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// natted counts the packets that went through the node's nat table
// (PREROUTING's jump to KUBE-SERVICES): only the first packet of a new flow
// does, so it counts new flows. (The kernel's stat counters of inserts and
// lookups that found an entry are gone from recent kernels.)
func natted(t *testing.T, topo *Topology) uint64 {
	t.Helper()
	var out []byte
	err := netns.Run(topo.NetnsByRole("node").Path, func() (err error) {
		out, err = exec.Command(topo.RuleBin, "-w", "5", "-t", "nat", "-L", "PREROUTING", "-v", "-x", "-n").Output()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[2] == "KUBE-SERVICES" {
			n, err := strconv.ParseUint(f[0], 10, 64)
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			return n
		}
	}
	t.Fatalf("no jump to KUBE-SERVICES in\n%s", out)
	return 0
}

// On a topology with a short UDP timeout the source ports wrap, and a reused
// tuple is a new flow again: every flow goes through the node's NAT rules.
func TestFloodWrap(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 8 s")
	}
	// Longer than a lap of the ports takes at full speed on a fast
	// machine, so that only the wait keeps live entries from being reused.
	const timeout = 2 * time.Second
	topo := setupOpts(t, "endpoints-2", Options{UDPTimeout: timeout})
	for _, ns := range topo.Namespaces {
		for _, key := range []string{"nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream"} {
			if v := readSysctl(t, ns, "net/netfilter/"+key); v != "2" {
				t.Errorf("%s in %s: %s, want 2", key, ns.Role, v)
			}
		}
	}
	if _, err := topo.Flood(context.Background(), FloodOptions{Duration: time.Second, Established: EstablishedUDP}); err == nil || !strings.Contains(err.Error(), "UDP timeout") {
		t.Errorf("an established flood on a topology with a UDP timeout: %v", err)
	}
	// The topology check's query to the target came from an ephemeral
	// port, inside the flood's range: its entry must expire first, or the
	// flow from that port is not new.
	time.Sleep(timeout + reuseMargin)
	nattedBefore := natted(t, topo)
	st, err := topo.Flood(context.Background(), FloodOptions{Duration: 5 * time.Second, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !st.PortsWrap || st.PortsExhausted || st.Errors != 0 {
		t.Fatalf("wrap %v, exhausted %v, %d errors (%s)", st.PortsWrap, st.PortsExhausted, st.Errors, st.FirstError)
	}
	node := nodeStats(t, st.Netns)
	if n := natted(t, topo) - nattedBefore; n != st.Flows || node.Delta.Drop != 0 || node.Delta.EarlyDrop != 0 {
		t.Errorf("%d new flows in the node for %d sent (drop %d, early_drop %d)",
			n, st.Flows, node.Delta.Drop, node.Delta.EarlyDrop)
	}
	t.Logf("%d flows in %v (%d source ports)", st.Flows, st.Duration, FloodPorts)
	// Only a flood that comes round the ports within the timeout and margin
	// waits before reusing one; a slower one reuses only expired entries,
	// whatever the wait does.
	if laps := st.Rate * (timeout + reuseMargin).Seconds() / FloodPorts; laps <= 1 {
		t.Skipf("%.0f flows/s: too slow a machine for a port's reuse to wait (%.2f laps per %v)", st.Rate, laps, timeout+reuseMargin)
	}
}

// Marks cut a flood into segments that hold every flow, pause it, and their
// end ends it. After a pause a paced flood goes on at its pace, without
// making up for the pause.
func TestFloodMarks(t *testing.T) {
	topo := setup(t, "endpoints-1", "iptables", 0)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	go func() {
		defer pw.Close()
		for _, m := range []struct {
			after time.Duration
			line  string
		}{{300 * time.Millisecond, "a"}, {500 * time.Millisecond, "!p"}, {500 * time.Millisecond, "b"}, {500 * time.Millisecond, ""}} {
			time.Sleep(m.after)
			if m.line != "" {
				io.WriteString(pw, m.line+"\n")
			}
		}
	}()
	const rate = 2000
	st, err := topo.Flood(context.Background(), FloodOptions{Duration: time.Minute, Threads: 2, Rate: rate, Marks: pr})
	if err != nil {
		t.Fatal(err)
	}
	if st.Duration > 20*time.Second || st.Errors != 0 {
		t.Fatalf("a flood that ends with its marks: %v, %d errors (%s)", st.Duration, st.Errors, st.FirstError)
	}
	var sum uint64
	var labels []string
	for _, g := range st.Segments {
		sum += g.Packets
		labels = append(labels, g.Label)
	}
	if strings.Join(labels, ",") != ",a,p,b" || sum != st.Flows {
		t.Fatalf("segments %+v: want labels \"\", a, p, b and %d flows in all", st.Segments, st.Flows)
	}
	// In the pause, at most the flows under way when it began (one a
	// thread); after it, about 500 ms at the rate, not more.
	p, b := st.Segments[2], st.Segments[3]
	if !p.Paused || p.Packets > 2 || p.Duration < 400*time.Millisecond {
		t.Errorf("a pause of 500 ms: %+v", p)
	}
	if want := b.Duration.Seconds() * rate; b.Paused || float64(b.Packets) < want*0.7 || float64(b.Packets) > want*1.1+2 {
		t.Errorf("after the pause: %+v; want about %.0f flows", b, want)
	}
	t.Logf("segments %+v", st.Segments)
}

// An established flood sends every packet on one flow per thread, opened
// before it starts: only each flow's first packet goes through the node's
// NAT rules, no entry is made during the flood, and each flow's entry still
// has its reply at the end. TCP goes through the service's dns-tcp rules
// (iptables and nft) to a sink in the endpoint.
func TestFloodEstablished(t *testing.T) {
	for _, tc := range []struct{ proto, nat string }{
		{EstablishedUDP, "iptables"}, {EstablishedTCP, "iptables"}, {EstablishedTCP, "nft"},
	} {
		t.Run(tc.proto+"-"+tc.nat, func(t *testing.T) {
			topo := setup(t, "endpoints-2", tc.nat, 0)
			var nattedBefore uint64
			if tc.nat == "iptables" {
				nattedBefore = natted(t, topo)
			}
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			go func() {
				defer pw.Close()
				time.Sleep(250 * time.Millisecond)
				io.WriteString(pw, "second half\n")
				time.Sleep(250 * time.Millisecond)
			}()
			st, err := topo.Flood(context.Background(), FloodOptions{Duration: time.Minute, Threads: 2, Established: tc.proto, Marks: pr})
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Segments) != 2 || st.Segments[0].Packets+st.Segments[1].Packets != st.Packets || st.Segments[1].Packets == 0 {
				t.Errorf("segments %+v hold %d packets", st.Segments, st.Packets)
			}
			if st.Established != tc.proto || st.Flows != 2 || st.Packets < 100 || st.Errors != 0 || st.PerThread[0]+st.PerThread[1] != st.Packets {
				t.Fatalf("flood: %+v", st)
			}
			if st.EntriesReplied != 2 {
				t.Errorf("%d of 2 flows' entries replied at the end", st.EntriesReplied)
			}
			if tc.nat == "iptables" {
				if n := natted(t, topo) - nattedBefore; n != st.Flows {
					t.Errorf("%d packets went through the node's NAT rules for %d flows and %d packets; want one a flow", n, st.Flows, st.Packets)
				}
			}
			node := nodeStats(t, st.Netns)
			if node.After.Entries > node.Before.Entries || node.Delta.Drop != 0 || node.Delta.InsertFailed != 0 {
				t.Errorf("node conntrack during an established flood: entries %d -> %d, %+v", node.Before.Entries, node.After.Entries, node.Delta)
			}
			// A TCP flood's packets are data segments, each carrying one
			// write or more.
			if tc.proto == EstablishedTCP && st.TCPWrites < st.Packets {
				t.Errorf("%d data segments for %d writes", st.Packets, st.TCPWrites)
			}
			var text bytes.Buffer
			if err := st.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(text.String(), "2 of 2 still replied") {
				t.Errorf("text report:\n%s", text.String())
			}
			t.Logf("%d packets in %v: %.0f/s; %d TCP writes", st.Packets, st.Duration, st.Rate, st.TCPWrites)
		})
	}
}

// A flow whose entry is gone mid-flood (here flushed; in a bench, expired
// in a long pause) makes a new, unreplied entry at its next datagram: the
// flood says so instead of reporting new flows as established ones.
func TestFloodEstablishedLost(t *testing.T) {
	topo := setup(t, "endpoints-1", "iptables", 0)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	flushed := make(chan error, 1)
	go func() {
		defer pw.Close()
		time.Sleep(200 * time.Millisecond)
		ct, err := newCtnetlink(topo.NetnsByRole("node"))
		if err == nil {
			err = ct.Flush()
			ct.Close()
		}
		flushed <- err
		time.Sleep(200 * time.Millisecond)
	}()
	st, err := topo.Flood(context.Background(), FloodOptions{Duration: time.Minute, Established: EstablishedUDP, Marks: pr})
	if ferr := <-flushed; ferr != nil {
		t.Fatal(ferr)
	}
	if err == nil || !strings.Contains(err.Error(), "1 of 1 established flows lost their conntrack entry") || st.EntriesReplied != 0 {
		t.Errorf("flood over a flushed entry: %v, %d replied", err, st.EntriesReplied)
	}
	if st.Packets == 0 || st.Netns == nil {
		t.Errorf("the flood reports what it did: %+v", st)
	}
}
