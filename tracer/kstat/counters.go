package kstat

import (
	"os"
	"sort"
	"strconv"
	"strings"
)

// NetnsCounters are the race counters of one network namespace, keyed as
// ctprobe prints them ("clash_resolve", "insert_failed", "drop",
// "chain_too_long"; a counter the kernel lacks is absent): a reading, as
// capture headers and trailers keep one at start and end, or how much a
// reading grew (Growth), as summaries put it beside ctprobe's incidents.
// Capture files store it as JSON with these field names.
type NetnsCounters struct {
	Netns  uint64            `json:"Netns"` // netns inode
	Name   string            `json:"Name"`  // how the user knows it ("ctlab", "pid 4242 (coredns)"); may be empty
	Values map[string]uint64 `json:"Values"`
	// Entries is the netns's entry count and Max the table limit it is
	// held to (nf_conntrack_max, one value for every netns), when read:
	// gauges, so Growth keeps the later reading.
	Entries uint64 `json:"Entries,omitempty"`
	Max     uint64 `json:"Max,omitempty"`
}

// SnapshotAll reads the race counters of every network namespace on the
// host, by inode. Namespaces that vanish while it runs are left out.
func SnapshotAll() ([]NetnsCounters, error) {
	readings, err := Snapshot()
	if err != nil {
		return nil, err
	}
	max := ReadMax()
	out := make([]NetnsCounters, 0, len(readings))
	for ino, r := range readings {
		out = append(out, NetnsCounters{Netns: ino, Name: r.Name, Values: r.Counters.Values(), Entries: r.Counters.Entries, Max: max})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Netns < out[j].Netns })
	return out, nil
}

// Growth is how much each namespace's counters grew between two snapshots,
// for the namespaces where any grew. A namespace missing from before was
// created in between, so it starts from zero; one missing from after is
// gone and cannot be read. The kernel's per-CPU counters are 32-bit and
// wrap (Delta32).
func Growth(before, after []NetnsCounters) []NetnsCounters {
	base := make(map[uint64]map[string]uint64, len(before))
	for _, b := range before {
		base[b.Netns] = b.Values
	}
	var out []NetnsCounters
	for _, a := range after {
		d := make(map[string]uint64, len(a.Values))
		moved := false
		for k, v := range a.Values {
			d[k] = Delta32(v, base[a.Netns][k])
			moved = moved || d[k] != 0
		}
		if moved {
			out = append(out, NetnsCounters{Netns: a.Netns, Name: a.Name, Values: d, Entries: a.Entries, Max: a.Max})
		}
	}
	return out
}

// maxPath is nf_conntrack_max: one limit for the entries of each netns,
// writable only in the initial one (docs/kernel-notes.md, Conntrack counters
// and other kernel evidence).
const maxPath = "/proc/sys/net/netfilter/nf_conntrack_max"

// ReadMax is nf_conntrack_max, or 0 when it cannot be read (conntrack not
// loaded).
func ReadMax() uint64 {
	b, err := os.ReadFile(maxPath)
	if err != nil {
		return 0
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0
	}
	return v
}
