package names

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ctprobe/ctprobe/tracer/netns"
)

// /run/netns names: a file bind-mounted over a namespace (what `ip netns
// add` and the CNI plugins do) is named; a stale file is not. Needs root
// to mount.
func TestNetnsNames(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to bind-mount a namespace")
	}
	root := t.TempDir()
	dir := filepath.Join(root, "run", "netns")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"cni-1234", "stale"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	target := filepath.Join(dir, "cni-1234")
	if err := unix.Mount("/proc/self/ns/net", target, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(target, unix.MNT_DETACH)
	ino, err := netns.Inode("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	got, err := node{root: root}.netnsNames(MaxNetns)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[uint32(ino)] != "cni-1234" {
		t.Errorf("names %v, want %d: cni-1234", got, ino)
	}
	// No /run/netns at all is no error.
	if got, err := (node{root: t.TempDir()}).netnsNames(MaxNetns); err != nil || len(got) != 0 {
		t.Errorf("without /run/netns: %v, %v", got, err)
	}
}

// This machine's own /proc: the host netns is PID 1's, and a process's
// cgroup file reads.
func TestNodeOwnProc(t *testing.T) {
	n := node{}
	host, err := n.hostNetns()
	if err != nil {
		t.Skipf("no /proc/1/ns/net here: %v", err)
	}
	self, err := netns.Inode("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if !n.holds("self", uint32(self)) {
		t.Error("holds(self, own netns) is false")
	}
	if host == 0 {
		t.Error("host netns inode 0")
	}
	if _, err := n.cgroup(uint32(os.Getpid())); err != nil {
		t.Error(err)
	}
}
