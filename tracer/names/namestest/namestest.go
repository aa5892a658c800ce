// Package namestest lays out a host root as package names reads it, for
// the tests of names and of the layers that name incidents with a real
// names.Resolver (Options.HostRoot).
package namestest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// Process adds /proc/PID under root: a process in network namespace netns
// (its /proc/PID/ns/net link) whose /proc/PID/cgroup says cgroup.
func Process(tb testing.TB, root string, pid int, netns uint64, cgroup string) {
	tb.Helper()
	dir := filepath.Join(root, "proc", strconv.Itoa(pid))
	if err := os.MkdirAll(filepath.Join(dir, "ns"), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.Symlink(fmt.Sprintf("net:[%d]", netns), filepath.Join(dir, "ns", "net")); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte(cgroup), 0o644); err != nil {
		tb.Fatal(err)
	}
}
