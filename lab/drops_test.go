package lab

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Reverse collisions (race 5): UDP with a NAT table loaded is merged on
// 6.12+; before, dropped (every loss a node drop) or its port moved. TCP
// has no clash resolution: every collision is a drop. Racy like
// TestRaceScenarios: a run without any collision is retried.
func TestReverseCollisions(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("the peers must send from two CPUs")
	}
	const k, attempts = 100, 6
	for _, name := range []string{"reverse-udp", "reverse-tcp"} {
		for _, nat := range []string{"iptables", "nft"} {
			t.Run(name+"/"+nat, func(t *testing.T) {
				topo := setup(t, name, nat, 500*time.Millisecond)
				var seen uint64
				for try := 1; try <= attempts && seen == 0; try++ {
					st, err := topo.Lookups(context.Background(), k)
					if err != nil {
						t.Fatal(err)
					}
					node := st.NetnsByRole("node").Delta
					t.Logf("try %d: %d attempts; clash_resolve %d insert_failed %d drop %d; peers lost %d, ports moved %d",
						try, st.Lookups, node.ClashResolve, node.InsertFailed, node.Drop, st.PeerLost, st.PortMoved)
					if len(st.Sockets) != 2*k || st.Sockets[0].Client != "pod" || st.Sockets[1].Client != "dns1" {
						t.Errorf("sockets %+v", st.Sockets[:2])
					}
					switch {
					case name == "reverse-tcp":
						if node.ClashResolve != 0 || node.InsertFailed != node.Drop {
							t.Errorf("TCP collisions are dropped: clash_resolve %d, insert_failed %d, drop %d", node.ClashResolve, node.InsertFailed, node.Drop)
						}
						seen = node.Drop
					case kernelAtLeast(6, 12):
						if node.InsertFailed != 0 || st.PeerLost != 0 || st.PortMoved != 0 {
							t.Errorf("6.12 merges UDP reverse collisions: insert_failed %d, peers lost %d, ports moved %d", node.InsertFailed, st.PeerLost, st.PortMoved)
						}
						seen = node.ClashResolve
					default:
						if uint64(st.PeerLost) != node.Drop {
							t.Errorf("peers lost %d datagrams, the node dropped %d", st.PeerLost, node.Drop)
						}
						seen = node.InsertFailed + uint64(st.PortMoved)
					}
				}
				if seen == 0 {
					t.Skipf("no reverse collision in %d x %d attempts: the CPUs are busy elsewhere", attempts, k)
				}
			})
		}
	}
}

// masq-random-fully: the two packets of one socket get different ports, so
// they are not merged: on 5.6+ the loser is inserted reply-only, nothing
// is lost, and every clash leaves a second entry.
func TestMasqRandomFully(t *testing.T) {
	if runtime.NumCPU() < 2 || !kernelAtLeast(5, 10) {
		t.Skip("needs two CPUs and clash_resolve (5.10+)")
	}
	topo := setup(t, "masq-random-fully", "iptables", time.Second)
	st, err := topo.Lookups(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	node := st.NetnsByRole("node")
	t.Logf("clash_resolve %d, entries %d, lost %+v", node.Delta.ClashResolve, node.After.Entries, st.Lost)
	if st.Lost.Total() != 0 || node.Delta.InsertFailed != 0 {
		t.Errorf("lost %+v, insert_failed %d: 5.6+ inserts the loser reply-only", st.Lost, node.Delta.InsertFailed)
	}
}

// table-full is deterministic: once the node's entries reach the lowered
// nf_conntrack_max, each new flow's packet is dropped in nf_conntrack_in
// (drop, not insert_failed) unless early_drop evicts an entry; every lost
// query is one of those drops. Close puts nf_conntrack_max back.
func TestTableFull(t *testing.T) {
	before, err := readSetting(conntrackMax)
	if err != nil {
		t.Skip(err)
	}
	const k = 30
	topo := setup(t, "table-full", "iptables", 200*time.Millisecond)
	st, err := topo.Lookups(context.Background(), k)
	if err != nil {
		t.Fatal(err)
	}
	node := st.NetnsByRole("node").Delta
	t.Logf("answered %d lost %d; node drop %d insert_failed %d early_drop %d entries %d", st.Answered.A, st.Lost.A, node.Drop, node.InsertFailed, node.EarlyDrop, node.Entries)
	if st.Lost.A == 0 || uint64(st.Lost.A) != node.Drop || node.InsertFailed != 0 {
		t.Errorf("lost %d queries, node drop %d, insert_failed %d", st.Lost.A, node.Drop, node.InsertFailed)
	}
	if err := topo.Close(); err != nil {
		t.Fatal(err)
	}
	if after, _ := readSetting(conntrackMax); after != before {
		t.Errorf("nf_conntrack_max %d after Close, was %d", after, before)
	}
}

// chain-too-long: a flood into 512 buckets makes chains the kernel refuses
// to grow (5.15+); Close puts the table's size back.
func TestChainTooLong(t *testing.T) {
	if !kernelAtLeast(5, 15) {
		t.Skip("chaintoolong is 5.15+")
	}
	before, err := readSetting(hashSizeParam)
	if err != nil {
		t.Skip(err)
	}
	topo := setup(t, "chain-too-long", "iptables", 200*time.Millisecond)
	st, err := topo.Flood(context.Background(), FloodOptions{Duration: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var node *NetnsStats
	for i := range st.Netns {
		if st.Netns[i].Role == "node" {
			node = &st.Netns[i]
		}
	}
	t.Logf("%d flows; node insert_failed %d chaintoolong %d entries %d", st.Flows, node.Delta.InsertFailed, node.Delta.ChainTooLong, node.After.Entries)
	if node.Delta.ChainTooLong == 0 || node.Delta.InsertFailed != node.Delta.ChainTooLong {
		t.Errorf("insert_failed %d, chaintoolong %d after %d flows into 512 buckets", node.Delta.InsertFailed, node.Delta.ChainTooLong, st.Flows)
	}
	if err := topo.Close(); err != nil {
		t.Fatal(err)
	}
	if after, _ := readSetting(hashSizeParam); after != before {
		t.Errorf("hashsize %d after Close, was %d", after, before)
	}
}

// Settings a dead run changed are put back by Cleanup, last change first.
func TestCleanupRestoresGlobals(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (/run/ctlab)")
	}
	knob := filepath.Join(t.TempDir(), "knob")
	if err := os.WriteFile(knob, []byte("7"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A pid that cannot be running: above the kernel's pid_max.
	dead := strconv.Itoa(1<<22 + 1)
	prefix := "ctl" + dead + "-1-"
	topo := &Topology{Prefix: prefix}
	if err := topo.setGlobal(knob, 9); err != nil {
		t.Fatal(err)
	}
	if err := topo.setGlobal(knob, 11); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(knob); string(b) != "11" {
		t.Fatalf("knob %q", b)
	}
	if _, err := Cleanup(false); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(knob); strings.TrimSpace(string(b)) != "7" {
		t.Errorf("knob %q after Cleanup, want the first value 7", b)
	}
	if _, err := os.Stat(filepath.Join(globalsDir, prefix+"globals")); !os.IsNotExist(err) {
		t.Errorf("the record of a restored topology is left: %v", err)
	}
}
