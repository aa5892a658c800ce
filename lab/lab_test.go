package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ctprobe/ctprobe/tracer/kstat"
)

// needLab skips unless the lab can run here: root, ip, conntrack, and the
// tool for the chosen rule mode.
func needLab(t *testing.T, sc Scenario, nat string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip (iproute2) not installed")
	}
	if _, err := os.Stat("/proc/net/stat/nf_conntrack"); err != nil {
		t.Skip("conntrack not available")
	}
	if _, err := ruleTool(sc, Options{NAT: nat}); err != nil {
		t.Skip(err)
	}
}

// kernelAtLeast compares the running kernel's major.minor.
func kernelAtLeast(major, minor int) bool {
	var a, b int
	fmt.Sscanf(kernelRelease(), "%d.%d", &a, &b)
	return a > major || (a == major && b >= minor)
}

// clashes is what the kernel counts for settled clashes: clash_resolve from
// 5.10; before that insert_failed counts them (docs/kernel-notes.md, What confirm returns, per era: 4.19 to 5.9).
func clashes(d kstat.Counters) uint64 {
	if d.HasClashResolve {
		return d.ClashResolve
	}
	return d.InsertFailed
}

// setup builds a topology and registers a cleanup that closes it and checks
// that no namespace is left behind.
func setup(t *testing.T, name, nat string, timeout time.Duration) *Topology {
	t.Helper()
	return setupOpts(t, name, Options{NAT: nat, Timeout: timeout})
}

// setupOpts is setup with any Options.
func setupOpts(t *testing.T, name string, o Options) *Topology {
	t.Helper()
	sc, err := ScenarioByName(name)
	if err != nil {
		t.Fatal(err)
	}
	needLab(t, sc, o.NAT)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topo, err := Setup(ctx, sc, o)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		assertGone(t, topo)
	})
	return topo
}

func assertGone(t *testing.T, topo *Topology) {
	t.Helper()
	for _, ns := range topo.Namespaces {
		if _, err := os.Stat(ns.Path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("netns %s still exists after Close (%v)", ns.Path, err)
		}
	}
	left, err := Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range left {
		if strings.HasPrefix(l.Name, topo.Prefix) {
			t.Errorf("leftover netns %s", l.Name)
		}
	}
}

// TestRaceScenarios runs the scenarios where A and AAAA race on one socket
// and checks what the kernel must show: clashes counted in the node netns
// (and nowhere else), and on 5.6+ (which settles UDP clashes) no lost reply.
// Like the kernel's conntrack_clash.sh, a run without any clash is retried.
func TestRaceScenarios(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("the A/AAAA race needs two CPUs")
	}
	const k, attempts = 100, 6
	for _, name := range []string{"endpoints-1", "endpoints-2", "nonat", "ipv6", "local"} {
		for _, nat := range []string{"iptables", "nft"} {
			t.Run(name+"/"+nat, func(t *testing.T) {
				// A generous timeout: it only costs time when a reply is
				// really lost, and a busy machine must not fake a loss.
				topo := setup(t, name, nat, time.Second)
				var total uint64
				together := 0
				for try := 1; try <= attempts && total == 0; try++ {
					if try > 1 {
						time.Sleep(500 * time.Millisecond) // let a load burst pass
					}
					st, err := topo.Lookups(context.Background(), k)
					if err != nil {
						t.Fatalf("Lookups: %v", err)
					}
					node := st.NetnsByRole("node")
					if st.Lookups != k || st.Answered.Total()+st.Lost.Total() != 2*k {
						t.Fatalf("%d lookups, answered %+v, lost %+v", st.Lookups, st.Answered, st.Lost)
					}
					var served uint64
					for _, n := range st.Served {
						served += n
					}
					if served != uint64(st.Answered.Total()) {
						t.Errorf("endpoints served %v queries, client got %d answers", st.Served, st.Answered.Total())
					}
					// Every lost reply is a conntrack drop in the node.
					if uint64(st.Lost.Total()) != node.Delta.Drop {
						t.Errorf("lost %d replies but the node counted %d drops", st.Lost.Total(), node.Delta.Drop)
					}
					if kernelAtLeast(5, 6) && (st.Lost.Total() != 0 || node.Delta.InsertFailed != 0) {
						t.Errorf("kernel %s settles UDP clashes, yet lost %+v, insert_failed %d",
							st.Kernel, st.Lost, node.Delta.InsertFailed)
					}
					for _, n := range st.Netns {
						if n.Role != "node" && (clashes(n.Delta) != 0 || n.After.Entries != 0) {
							t.Errorf("netns %s (%s) has conntrack activity: %+v", n.Name, n.Role, n.Delta)
						}
					}
					total = clashes(node.Delta)
					together += st.Simultaneous
					t.Logf("try %d: %d lookups in %v, clashes %d (%.0f%%), split endpoints %d, sent together %d (median gap %v), entries %d",
						try, st.Lookups, st.Duration.Round(time.Millisecond), total,
						100*float64(total)/float64(k), st.Split, st.Simultaneous, st.MedianSkew, node.After.Entries)
					if len(st.Sockets) != k || st.Sockets[0].Cookie == 0 || st.Sockets[0].Port == 0 {
						t.Errorf("sockets not recorded: %d, first %+v", len(st.Sockets), st.Sockets[0])
					}
				}
				switch {
				case total > 0:
				case together == 0:
					// Like the kernel's conntrack_clash.sh: no clash because
					// the race never got a chance is a skip, not a pass.
					load, _ := os.ReadFile("/proc/loadavg")
					t.Skipf("no clash in %d x %d lookups, and the two senders never ran at once: the CPUs are busy elsewhere (load %s)",
						attempts, k, strings.TrimSpace(string(load)))
				default:
					t.Errorf("no conntrack clash in the node after %d x %d lookups although %d of them sent A and AAAA together", attempts, k, together)
				}
			})
		}
	}
}

// Race 4 is deterministic: every second query is dropped at confirm, on
// every kernel, and the counters say so exactly.
func TestSNATOnePort(t *testing.T) {
	const k = 20
	for _, nat := range []string{"iptables", "nft"} {
		t.Run(nat, func(t *testing.T) {
			topo := setup(t, "snat-one-port", nat, 250*time.Millisecond)
			st, err := topo.Lookups(context.Background(), k)
			if err != nil {
				t.Fatal(err)
			}
			node := st.NetnsByRole("node").Delta
			t.Logf("%d lookups in %v: answered %+v lost %+v; node insert_failed %d drop %d",
				st.Lookups, st.Duration.Round(time.Millisecond), st.Answered, st.Lost, node.InsertFailed, node.Drop)
			if st.Answered.A != k || st.Lost.A != 0 {
				t.Errorf("first pod: answered %d lost %d, want %d/0", st.Answered.A, st.Lost.A, k)
			}
			if st.Lost.AAAA != k || st.Answered.AAAA != 0 {
				t.Errorf("second pod: lost %d answered %d, want %d/0", st.Lost.AAAA, st.Answered.AAAA, k)
			}
			if len(st.Served) != 1 || st.Served[0] != k {
				t.Errorf("the server answered %v queries, want [%d]: the second pod's never leave the node", st.Served, k)
			}
			if node.InsertFailed != k || node.Drop != k {
				t.Errorf("node insert_failed %d drop %d, want %d each", node.InsertFailed, node.Drop, k)
			}
			if node.HasClashResolve && node.ClashResolve != 0 {
				t.Errorf("clash_resolve %d: a reply-tuple clash of different flows cannot be settled", node.ClashResolve)
			}
			if len(st.Sockets) != 2*k || st.Sockets[0].Client != "pod" || st.Sockets[1].Client != "pod2" {
				t.Errorf("sockets %+v", st.Sockets[:2])
			}
		})
	}
}

// vxlan-masq: the seed's double masquerade across a VXLAN overlay runs, and
// its counters are reported.
func TestVXLANMasq(t *testing.T) {
	const k = 100
	for _, nat := range []string{"iptables", "nft"} {
		t.Run(nat, func(t *testing.T) {
			topo := setup(t, "vxlan-masq", nat, time.Second)
			st, err := topo.Lookups(context.Background(), k)
			if err != nil {
				t.Fatal(err)
			}
			if st.Lookups != k || st.Answered.Total()+st.Lost.Total() != 2*k {
				t.Fatalf("answered %+v lost %+v", st.Answered, st.Lost)
			}
			if len(st.Netns) != 5 || st.NetnsByRole("node2") == nil {
				t.Fatalf("netns %+v", st.Netns)
			}
			n1 := st.NetnsByRole("node").Delta
			t.Logf("answered %+v lost %+v split %d; node1 clashes %d insert_failed %d drop %d entries %d",
				st.Answered, st.Lost, st.Split, clashes(n1), n1.InsertFailed, n1.Drop, n1.Entries)
			if n1.Entries < uint64(k) {
				t.Errorf("node1 tracks %d entries after %d lookups", n1.Entries, k)
			}
		})
	}
}

// A failing Setup removes what it built.
func TestSetupFailureCleansUp(t *testing.T) {
	sc, _ := ScenarioByName("endpoints-2")
	needLab(t, sc, "iptables")
	before := leftoverNames(t)
	_, err := Setup(context.Background(), sc, Options{IPTables: "/bin/false"})
	if err == nil || !strings.Contains(err.Error(), "installing kube-proxy rules") {
		t.Fatalf("Setup with a failing iptables: %v", err)
	}
	t.Log(err)
	if after := leftoverNames(t); after != before {
		t.Errorf("namespaces before %q, after %q", before, after)
	}
}

func leftoverNames(t *testing.T) string {
	t.Helper()
	l, err := Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, x := range l {
		if x.OwnerPid == os.Getpid() {
			names = append(names, x.Name)
		}
	}
	return strings.Join(names, ",")
}

// Cancelled lookups stop at once and still report counters; the report
// renders as text and JSON; Close is idempotent and Lookups after Close fails.
func TestCancelReportAndClose(t *testing.T) {
	topo := setup(t, "endpoints-2", "iptables", DefaultTimeout)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	st, err := topo.Lookups(ctx, 50)
	if !errors.Is(err, context.Canceled) || st.Lookups != 0 || len(st.Netns) != 4 {
		t.Fatalf("cancelled run: %v, %d lookups, %d netns", err, st.Lookups, len(st.Netns))
	}
	st, err = topo.Lookups(context.Background(), 5)
	if err != nil {
		t.Fatal(err)
	}
	if st.Pid != os.Getpid() || len(st.TIDs) != 2 || st.TIDs[0] == 0 || st.NetnsByRole("pod").Inode == 0 {
		t.Errorf("identity fields: pid %d tids %v", st.Pid, st.TIDs)
	}
	var txt bytes.Buffer
	if err := st.WriteText(&txt); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"endpoints-2", "answered   A 5  AAAA 5", topo.Prefix + "node", "clash_resolve"} {
		if !strings.Contains(txt.String(), w) {
			t.Errorf("text report lacks %q:\n%s", w, txt.String())
		}
	}
	js, err := json.Marshal(&st)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"scenario", "answered", "lost", "netns", "pids", "comm", "sockets"} {
		if _, ok := back[key]; !ok {
			t.Errorf("JSON lacks %q", key)
		}
	}
	if err := topo.Close(); err != nil {
		t.Fatal(err)
	}
	if err := topo.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := topo.Lookups(context.Background(), 1); err == nil {
		t.Error("Lookups after Close succeeded")
	}
	assertGone(t, topo)
}

func TestOptionsErrors(t *testing.T) {
	one, _ := ScenarioByName("endpoints-1")
	two, _ := ScenarioByName("endpoints-2")
	for _, tc := range []struct {
		sc   Scenario
		o    Options
		want string
	}{
		{one, Options{Endpoints: 2}, "always has 1"},
		{two, Options{Endpoints: MaxEndpoints + 1}, "use 1 to"},
		{two, Options{NAT: "ipvs"}, "use iptables or nft"},
		{two, Options{Timeout: -time.Second}, "timeout"},
		{two, Options{Name: "a..b"}, "empty label"},
	} {
		if _, err := Setup(context.Background(), tc.sc, tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err %v, want %q", tc.o, err, tc.want)
		}
	}
	if _, err := ScenarioByName("nope"); err == nil || !strings.Contains(err.Error(), "endpoints-2") {
		t.Errorf("unknown scenario: %v", err)
	}
}

// LookupsUntil goes past k lookups until the kernel counted the clashes
// asked for, and never past max.
func TestLookupsUntilClashes(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("racing sends need 2 CPUs")
	}
	topo := setup(t, "snat-one-port", "iptables", DefaultTimeout)
	// snat-one-port clashes exactly once a lookup, so the stop is exact.
	st, err := topo.LookupsUntil(context.Background(), 2, 7, 50)
	if err != nil {
		t.Fatal(err)
	}
	var counted uint64
	for _, n := range st.Netns {
		counted += n.Delta.Clashes()
	}
	// Counters are read every 10 lookups once past k.
	if counted < 7 || st.Lookups > 10 {
		t.Errorf("%d lookups counted %d clashes: want at least 7 within 10 lookups", st.Lookups, counted)
	}
	st, err = topo.LookupsUntil(context.Background(), 1, 1000, 12)
	if err != nil {
		t.Fatal(err)
	}
	if st.Lookups != 12 {
		t.Errorf("max 12 lookups, did %d", st.Lookups)
	}
}
