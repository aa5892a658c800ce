package kstat

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ctprobe/ctprobe/tracer/netns"
)

// Namespace is a network namespace found on the host.
type Namespace struct {
	Inode uint64
	Path  string // a path that opens it: /run/netns/NAME or /proc/PID/ns/net
	Name  string // "NAME" for /run/netns, else "pid PID (comm)"
}

// Namespaces lists the network namespaces reachable through /run/netns (as
// `ip netns add` names them) and through every process's /proc/PID/ns/net,
// one entry per inode; a named path is preferred. A process's comm is read
// only for a namespace not seen yet: a node has thousands of processes and a
// few dozen namespaces, and --interval lists them each time.
func Namespaces() ([]Namespace, error) {
	seen := map[uint64]bool{}
	var out []Namespace
	add := func(path string, name func() string) {
		ino, err := netns.Inode(path)
		if err != nil || seen[ino] {
			return
		}
		seen[ino] = true
		out = append(out, Namespace{Inode: ino, Path: path, Name: name()})
	}
	if named, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range named {
			add(filepath.Join("/run/netns", e.Name()), e.Name)
		}
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list network namespaces: %w", err)
	}
	for _, e := range procs {
		pid := e.Name()
		if _, err := strconv.Atoi(pid); err != nil {
			continue
		}
		add(filepath.Join("/proc", pid, "ns", "net"), func() string {
			comm, _ := os.ReadFile(filepath.Join("/proc", pid, "comm"))
			return fmt.Sprintf("pid %s (%s)", pid, strings.TrimSpace(string(comm)))
		})
	}
	return out, nil
}

// Reading is one namespace's counters at one moment.
type Reading struct {
	Namespace
	Counters Counters
}

// Snapshot reads the counters of every network namespace on the host, keyed
// by inode. Namespaces that vanish while it runs are left out.
func Snapshot() (map[uint64]Reading, error) {
	nss, err := Namespaces()
	if err != nil {
		return nil, err
	}
	out := make(map[uint64]Reading, len(nss))
	for _, ns := range nss {
		c, err := ReadNetns(ns.Path)
		if err != nil {
			continue
		}
		out[ns.Inode] = Reading{Namespace: ns, Counters: c}
	}
	return out, nil
}

// Values returns the counters that account for races, keyed as ctprobe
// prints them; counters this kernel lacks are absent.
func (c Counters) Values() map[string]uint64 {
	// early_drop and invalid say which kernel reasons explain drops that
	// are not clashes (a full table, a tracker refusing a packet).
	v := map[string]uint64{"insert_failed": c.InsertFailed, "drop": c.Drop, "early_drop": c.EarlyDrop, "invalid": c.Invalid}
	if c.HasClashResolve {
		v["clash_resolve"] = c.ClashResolve
	}
	if c.HasChainTooLong {
		v["chain_too_long"] = c.ChainTooLong
	}
	return v
}
