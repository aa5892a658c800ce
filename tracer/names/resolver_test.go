package names

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctprobe/ctprobe/tracer/names/namestest"
)

// fakeHost is a host root with a /proc of a few processes: PID 1 in the
// node's netns, and pod processes in theirs.
type fakeHost struct {
	t    *testing.T
	root string
}

const hostNetns = 4026531840

func newFakeHost(t *testing.T) *fakeHost {
	h := &fakeHost{t: t, root: t.TempDir()}
	h.process(1, hostNetns, "0::/init.scope\n")
	return h
}

// process adds /proc/PID with its netns link and cgroup file.
func (h *fakeHost) process(pid int, netns uint32, cgroup string) {
	namestest.Process(h.t, h.root, pid, uint64(netns), cgroup)
}

func (h *fakeHost) exit(pid int) {
	if err := os.RemoveAll(filepath.Join(h.root, "proc", strconv.Itoa(pid))); err != nil {
		h.t.Fatal(err)
	}
}

// podProcess adds a process of container cid of pod uid, in netns.
func (h *fakeHost) podProcess(pid int, netns uint32, uid, cid string) {
	h.process(pid, netns, "0::/kubepods/besteffort/pod"+uid+"/"+cid+"\n")
}

// fakeRuntime answers List with whatever its function says.
type fakeRuntime struct {
	mu    sync.Mutex
	list  func(ctx context.Context) (State, error)
	calls int
}

func (f *fakeRuntime) List(ctx context.Context) (State, error) {
	f.mu.Lock()
	f.calls++
	list := f.list
	f.mu.Unlock()
	return list(ctx)
}
func (f *fakeRuntime) String() string { return "fake 1.0 at /run/fake.sock" }
func (f *fakeRuntime) Close() error   { return nil }
func (f *fakeRuntime) set(list func(ctx context.Context) (State, error)) {
	f.mu.Lock()
	f.list = list
	f.mu.Unlock()
}
func (f *fakeRuntime) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func answer(st State) func(context.Context) (State, error) {
	return func(context.Context) (State, error) { return st, nil }
}

// warnings collects Options.Warn's messages.
type warnings struct {
	mu  sync.Mutex
	all []string
}

func (w *warnings) add(m string) {
	w.mu.Lock()
	w.all = append(w.all, m)
	w.mu.Unlock()
}

func (w *warnings) list() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.all...)
}

const (
	uidA    = "11111111-1111-4111-8111-111111111111"
	uidB    = "22222222-2222-4222-8222-222222222222"
	sbA     = "aaaa000000000000000000000000000000000000000000000000000000000000"
	sbB     = "bbbb000000000000000000000000000000000000000000000000000000000000"
	ctrA    = "aaaa111111111111111111111111111111111111111111111111111111111111"
	ctrB    = "bbbb111111111111111111111111111111111111111111111111111111111111"
	netnsA  = 4026532201
	netnsB  = 4026532202
	pidA    = 4242
	pidB    = 4343
	pidHost = 77
)

var (
	ipA  = netip.MustParseAddr("10.88.0.2")
	ipB  = netip.MustParseAddr("10.88.0.3")
	podA = Pod{Namespace: "kube-system", Name: "coredns-5d78c9869d-abcde", UID: uidA}
	podB = Pod{Namespace: "default", Name: "checkout-7f9c", UID: uidB}
)

func twoPods() State {
	return State{
		Sandboxes: []Sandbox{
			{ID: sbA, Pod: podA, IPs: []netip.Addr{ipA}},
			{ID: sbB, Pod: podB, IPs: []netip.Addr{ipB, netip.MustParseAddr("fd00::3")}},
		},
		Containers: []Container{
			{ID: ctrA, Name: "coredns", SandboxID: sbA},
			{ID: ctrB, Name: "app", SandboxID: sbB},
		},
	}
}

// twoPodHost has pods A and B running: each a pause process and a
// container process in the pod's netns; and a host process.
func twoPodHost(t *testing.T) *fakeHost {
	h := newFakeHost(t)
	h.podProcess(100, netnsA, uidA, sbA)
	h.podProcess(pidA, netnsA, uidA, ctrA)
	h.podProcess(200, netnsB, uidB, sbB)
	h.podProcess(pidB, netnsB, uidB, ctrB)
	h.process(pidHost, hostNetns, "0::/system.slice/ssh.service\n")
	return h
}

func start(t *testing.T, o Options) *Resolver {
	r := Start(o)
	t.Cleanup(func() { r.Close() })
	return r
}

func TestResolverNamesFromRuntime(t *testing.T) {
	h := twoPodHost(t)
	r := start(t, Options{HostRoot: h.root, Runtime: &fakeRuntime{list: answer(twoPods())}})
	cases := []struct {
		name string
		k    Key
		want Names
	}{
		{"sender in its pod's netns", Key{Netns: netnsA, PID: pidA, Addr: ipA}, Names{Pod: podA, Container: "coredns", ContainerID: ctrA}},
		{"pod netns, sender unknown", Key{Netns: netnsB, Addr: ipB}, Names{Pod: podB}},
		{"forwarded: the node's netns, the sender known (--timeline joins it)", Key{Netns: hostNetns, PID: pidB, Addr: ipB}, Names{Pod: podB, Container: "app", ContainerID: ctrB}},
		{"forwarded: the node's netns, by source address", Key{Netns: hostNetns, Addr: ipA}, Names{Pod: podA}},
		{"forwarded IPv6 by source address", Key{Netns: hostNetns, Addr: netip.MustParseAddr("fd00::3")}, Names{Pod: podB}},
		{"a host process", Key{Netns: hostNetns, PID: pidHost, Addr: netip.MustParseAddr("192.168.1.5")}, Names{}},
		{"a sender that exited: its netns still names the pod", Key{Netns: netnsA, PID: 99999}, Names{Pod: podA}},
	}
	for _, c := range cases {
		if got := r.Names(c.k); got != c.want {
			t.Errorf("%s: Names(%+v) = %+v, want %+v", c.name, c.k, got, c.want)
		}
	}
	if p, ok := r.PodOfNetns(netnsB); !ok || p != podB {
		t.Errorf("PodOfNetns(B) = %+v %v", p, ok)
	}
	if _, ok := r.PodOfNetns(hostNetns); ok {
		t.Error("the node's netns names a pod")
	}
	st := r.Status()
	if st.Source != SourceRuntime || st.Pods != 2 || st.Runtime != "fake 1.0 at /run/fake.sock" {
		t.Errorf("status %+v", st)
	}
	if !strings.Contains(st.String(), "fake 1.0 at /run/fake.sock (2 pods") {
		t.Errorf("status says %q", st)
	}
}

// A pod on the host's network has the node's address and netns: neither
// names it, only its processes' cgroups do.
func TestResolverHostNetworkPod(t *testing.T) {
	h := newFakeHost(t)
	node := netip.MustParseAddr("192.168.1.5")
	h.podProcess(300, hostNetns, uidA, ctrA)
	st := State{Sandboxes: []Sandbox{{ID: sbA, Pod: podA, IPs: []netip.Addr{node}, HostNetwork: true}},
		Containers: []Container{{ID: ctrA, Name: "agent", SandboxID: sbA}}}
	r := start(t, Options{HostRoot: h.root, Runtime: &fakeRuntime{list: answer(st)}})
	if got := r.Names(Key{Netns: hostNetns, Addr: node}); got != (Names{}) {
		t.Errorf("the node's address names %+v", got)
	}
	if got := r.Names(Key{Netns: hostNetns, PID: 300, Addr: node}); got != (Names{Pod: podA, Container: "agent", ContainerID: ctrA}) {
		t.Errorf("the host-network pod's process: %+v", got)
	}
}

func TestResolverWithoutRuntime(t *testing.T) {
	h := twoPodHost(t)
	var w warnings
	r := start(t, Options{HostRoot: h.root, NoRuntime: "no container runtime socket at /run/containerd/containerd.sock", Warn: w.add})
	if got, want := r.Names(Key{Netns: netnsA, PID: pidA, Addr: ipA}), (Names{Pod: Pod{UID: uidA}, ContainerID: ctrA}); got != want {
		t.Errorf("sender: %+v, want %+v", got, want)
	}
	if got, want := r.Names(Key{Netns: netnsB}), (Names{Pod: Pod{UID: uidB}}); got != want {
		t.Errorf("netns: %+v, want %+v", got, want)
	}
	// Without the runtime, pod addresses are unknown.
	if got := r.Names(Key{Netns: hostNetns, Addr: ipA}); got != (Names{}) {
		t.Errorf("forwarded: %+v", got)
	}
	st := r.Status()
	if st.Source != SourceNode || st.Pods != 2 || !strings.Contains(st.String(), "no container runtime socket") {
		t.Errorf("status %+v: %s", st, st)
	}
	if len(w.list()) != 0 {
		t.Errorf("warnings %q: the caller says why there is no runtime", w.list())
	}
}

// A runtime that does not answer in time, fails, or hangs past its
// deadline: Start and Names return, the node's names are used, and the
// user is told once, and once more when it answers again.
func TestResolverRuntimeFails(t *testing.T) {
	slow := func(ctx context.Context) (State, error) {
		<-ctx.Done()
		return State{}, fmt.Errorf("list pod sandboxes: %w", ctx.Err())
	}
	refused := func(context.Context) (State, error) {
		return State{}, errors.New("connection refused")
	}
	for _, c := range []struct {
		name string
		list func(context.Context) (State, error)
		says string
	}{{"slow", slow, "deadline exceeded"}, {"refused", refused, "connection refused"}} {
		t.Run(c.name, func(t *testing.T) {
			h := twoPodHost(t)
			var w warnings
			rt := &fakeRuntime{list: c.list}
			began := time.Now()
			r := start(t, Options{HostRoot: h.root, Runtime: rt, Timeout: 50 * time.Millisecond, Refresh: 20 * time.Millisecond, MinInterval: time.Millisecond, Warn: w.add})
			if d := time.Since(began); d > time.Second {
				t.Errorf("Start took %v", d)
			}
			if got, want := r.Names(Key{Netns: netnsA, PID: pidA}), (Names{Pod: Pod{UID: uidA}, ContainerID: ctrA}); got != want {
				t.Errorf("fallback: %+v, want %+v", got, want)
			}
			for rt.Calls() < 4 {
				time.Sleep(10 * time.Millisecond)
			}
			st := r.Status()
			if st.Source != SourceNode || !strings.Contains(st.Reason, c.says) || !strings.Contains(st.Reason, "fake 1.0") {
				t.Errorf("status %+v", st)
			}
			if ws := w.list(); len(ws) != 1 || !strings.Contains(ws[0], c.says) || !strings.Contains(ws[0], "cgroup paths") {
				t.Errorf("warnings after %d failed refreshes: %q, want one", rt.Calls(), ws)
			}
			rt.set(answer(twoPods()))
			waitFor(t, func() bool { return r.Status().Source == SourceRuntime })
			if got, want := r.Names(Key{Netns: netnsA, PID: pidA}), (Names{Pod: podA, Container: "coredns", ContainerID: ctrA}); got != want {
				t.Errorf("after recovery: %+v, want %+v", got, want)
			}
			if ws := w.list(); len(ws) != 2 || !strings.Contains(ws[1], "answers again") {
				t.Errorf("warnings %q", ws)
			}
		})
	}
}

func TestResolverRuntimeHangs(t *testing.T) {
	h := twoPodHost(t)
	hang := make(chan struct{})
	defer close(hang)
	rt := &fakeRuntime{list: func(context.Context) (State, error) { <-hang; return State{}, nil }}
	began := time.Now()
	r := Start(Options{HostRoot: h.root, Runtime: rt, Timeout: 50 * time.Millisecond})
	if got := r.Names(Key{Netns: netnsA, PID: pidA}); got.ContainerID != ctrA || got.Pod.UID != uidA {
		t.Errorf("while the runtime hangs: %+v", got)
	}
	r.Close()
	if d := time.Since(began); d > 3*time.Second {
		t.Errorf("Start, Names and Close took %v with a runtime that never answers", d)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(end) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Whatever a runtime answers, the table keeps what can name something, and
// no more than its limits.
func TestResolverRuntimeGarbage(t *testing.T) {
	h := twoPodHost(t)
	long := strings.Repeat("x", 10000)
	st := State{
		Sandboxes: []Sandbox{
			{ID: "", Pod: podA}, // no id
			{ID: "s1"},          // no pod
			{ID: sbA, Pod: Pod{Name: long, UID: uidA, Namespace: "\x1b[31mred"}, IPs: []netip.Addr{{}, netip.IPv4Unspecified(), netip.MustParseAddr("127.0.0.1"), ipA}},
		},
		Containers: []Container{
			{ID: ctrA, Name: "c", SandboxID: "unknown"}, // no such sandbox
			{ID: "", Name: "d", SandboxID: sbA},
		},
	}
	for i := 0; i < MaxPods+10; i++ {
		st.Sandboxes = append(st.Sandboxes, Sandbox{ID: fmt.Sprint("many", i), Pod: Pod{Name: fmt.Sprint("p", i)}, IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})}})
	}
	var w warnings
	r := start(t, Options{HostRoot: h.root, Runtime: &fakeRuntime{list: answer(st)}, Warn: w.add})
	got := r.Names(Key{Netns: netnsA, PID: pidA, Addr: ipA})
	if len(got.Pod.Name) != maxField || got.Pod.UID != uidA || got.Container != "" || got.ContainerID != ctrA {
		t.Errorf("garbage answer gave %+v", got)
	}
	tab := r.cur.Load()
	if len(tab.sandboxes) > MaxPods || len(tab.byAddr) > MaxAddrs || !tab.truncated {
		t.Errorf("table holds %d sandboxes, %d addresses (truncated %v)", len(tab.sandboxes), len(tab.byAddr), tab.truncated)
	}
	if ws := w.list(); len(ws) != 1 || !strings.Contains(ws[0], "more pods") {
		t.Errorf("warnings %q", ws)
	}
}

// Pods come and go: the table holds the pods that exist now, the
// per-sender cache and the record of answers stay bounded.
func TestResolverBoundedWithChurn(t *testing.T) {
	h := newFakeHost(t)
	rt := &fakeRuntime{list: answer(State{})}
	r := start(t, Options{HostRoot: h.root, Runtime: rt, MinInterval: time.Millisecond, Record: true})
	const live = 5
	for round := 0; round < 40; round++ {
		var st State
		for i := 0; i < live; i++ {
			n := round*live + i
			uid := fmt.Sprintf("%08x-0000-4000-8000-000000000000", n)
			sb := fmt.Sprintf("%064x", n)
			ctr := fmt.Sprintf("%064x", n+1<<20)
			pid := 1000 + n
			h.podProcess(pid, uint32(5000+n), uid, ctr)
			st.Sandboxes = append(st.Sandboxes, Sandbox{ID: sb, Pod: Pod{Namespace: "ns", Name: fmt.Sprint("pod-", n), UID: uid}, IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 2, byte(n >> 8), byte(n)})}})
			st.Containers = append(st.Containers, Container{ID: ctr, Name: "c", SandboxID: sb})
		}
		rt.set(answer(st))
		// The first lookup of a new pod misses, which refreshes.
		n := round * live
		k := Key{Netns: uint32(5000 + n), PID: uint32(1000 + n)}
		r.Names(k)
		waitFor(t, func() bool { return r.Names(k).Pod.Name == fmt.Sprint("pod-", n) })
		for i := 0; i < live; i++ {
			h.exit(1000 + round*live + i)
		}
		r.Pending(nil)
	}
	tab := r.cur.Load()
	if len(tab.sandboxes) != live || len(tab.containers) != live || len(tab.byAddr) != live {
		t.Errorf("after churn the table holds %d sandboxes, %d containers, %d addresses; want the %d live pods", len(tab.sandboxes), len(tab.containers), len(tab.byAddr), live)
	}
	for pid := uint32(1); pid < 3*maxPIDs; pid++ {
		r.Names(Key{Netns: hostNetns, PID: pid})
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pids) > maxPIDs || len(r.recorded) > maxRecorded || len(r.pending) > maxPending {
		t.Errorf("caches: %d pids, %d recorded, %d pending", len(r.pids), len(r.recorded), len(r.pending))
	}
}

// The answers a Resolver gave, kept and replayed through a Table, are the
// same answers: a report prints the live run's names.
func TestPendingReplaysThroughTable(t *testing.T) {
	h := twoPodHost(t)
	r := start(t, Options{HostRoot: h.root, Runtime: &fakeRuntime{list: answer(twoPods())}, Record: true})
	keys := []Key{
		{Netns: netnsA, PID: pidA, Addr: ipA},
		{Netns: hostNetns, Addr: ipB},
		{Netns: hostNetns, PID: pidHost},
		{Netns: netnsA, PID: pidA, Addr: ipA}, // again: recorded once
	}
	var live []Names
	for _, k := range keys {
		live = append(live, r.Names(k))
	}
	entries, unrecorded := r.Pending(nil)
	if len(entries) != 2 || unrecorded != 0 {
		t.Fatalf("pending %+v (%d unrecorded), want the two answers that name something", entries, unrecorded)
	}
	if more, _ := r.Pending(nil); len(more) != 0 {
		t.Errorf("Pending twice: %+v", more)
	}
	tab := NewTable()
	tab.Add(entries)
	for i, k := range keys {
		if got := tab.Names(k); got != live[i] {
			t.Errorf("%+v: replayed %+v, live %+v", k, got, live[i])
		}
	}
	// A pod gone: the same key now names nothing, which is recorded too.
	h.exit(pidA)
	h.exit(100)
	r.o.Runtime.(*fakeRuntime).set(answer(State{}))
	r.Names(Key{Netns: netnsA}) // a miss: refresh
	waitFor(t, func() bool { return r.Names(keys[0]).Empty() })
	entries, _ = r.Pending(nil)
	tab.Add(entries)
	if got := tab.Names(keys[0]); !got.Empty() {
		t.Errorf("after the pod went: replayed %+v", got)
	}
}

// The kernel reuses a freed namespace's inode number: a pod deleted and
// another created before the next refresh must not take the dead pod's
// name.
func TestResolverNetnsInodeReused(t *testing.T) {
	h := twoPodHost(t)
	rt := &fakeRuntime{list: answer(twoPods())}
	r := start(t, Options{HostRoot: h.root, Runtime: rt})
	if got := r.Names(Key{Netns: netnsA}); got.Pod != podA {
		t.Fatalf("before: %+v", got)
	}
	h.exit(100)
	h.exit(pidA)
	const uidC = "33333333-3333-4333-8333-333333333333"
	h.podProcess(500, netnsA, uidC, sbB) // a new pod's pause, in the reused inode
	if got := r.Names(Key{Netns: netnsA}); got.Pod == podA {
		t.Errorf("a reused namespace inode still names the deleted pod: %+v", got)
	}
	if _, ok := r.PodOfNetns(netnsA); ok {
		t.Error("PodOfNetns names the deleted pod")
	}
}
