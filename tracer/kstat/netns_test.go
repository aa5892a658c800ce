package kstat

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ctprobe/ctprobe/tracer/netns"
	"github.com/ctprobe/ctprobe/tracer/netns/netnstest"
)

func TestReadNetnsPrivileged(t *testing.T) {
	if _, err := os.Stat("/proc/net/stat/nf_conntrack"); err != nil {
		t.Skip("conntrack not available: ", err)
	}
	path := netnstest.New(t)

	c, err := ReadNetns(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.CPUs < 1 || c.CPUs > 4096 {
		t.Errorf("CPUs = %d", c.CPUs)
	}
	// A fresh netns has no conntrack entries: reading the main thread's
	// netns (/proc/self/net) by mistake would show the host's.
	if c.Entries != 0 || c.Drop != 0 || c.InsertFailed != 0 {
		t.Errorf("fresh netns counters not zero: %+v", c)
	}

	// Make the netns track a flow and see Entries move there only.
	nft, err := exec.LookPath("nft")
	if err != nil {
		t.Log("nft not installed: skipping the entries check")
		return
	}
	ipBin, err := exec.LookPath("ip")
	if err != nil {
		t.Log("ip not installed: skipping the entries check")
		return
	}
	err = netns.Run(path, func() error {
		// A child started from this thread inherits its netns.
		if out, err := exec.Command(ipBin, "link", "set", "lo", "up").CombinedOutput(); err != nil {
			return fmt.Errorf("ip link set lo up: %v: %s", err, out)
		}
		// Conntrack hooks a netns only once a rule needs it.
		cmd := exec.Command(nft, "-f", "-")
		cmd.Stdin = strings.NewReader("table ip kstat { chain out { type filter hook output priority 0; ct state new counter; }; }\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("nft: %v: %s", err, out)
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, []byte("x"), 0, &unix.SockaddrInet4{Port: 9, Addr: [4]byte{127, 0, 0, 1}})
	})
	if err != nil {
		t.Fatal(err)
	}
	c2, err := ReadNetns(path)
	if err != nil {
		t.Fatal(err)
	}
	if c2.Entries < 1 {
		t.Errorf("after one tracked UDP flow Entries = %d, want >= 1", c2.Entries)
	}
}

func TestReadNetnsMissing(t *testing.T) {
	_, err := ReadNetns("/nonexistent/netns")
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/netns") {
		t.Fatalf("err = %v", err)
	}
}

// A netns that /run/netns names is read through its name when the process
// the listing found in it has exited since, and a name that names another
// namespace by then is refused.
func TestReadNamedAfterItsProcessExitedPrivileged(t *testing.T) {
	if _, err := os.Stat("/proc/net/stat/nf_conntrack"); err != nil {
		t.Skip("conntrack not available: ", err)
	}
	path := netnstest.New(t)
	ino, err := netns.Inode(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(namedDir, 0o755); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(namedDir, fmt.Sprintf("ctprobe-kstat-test-%d", os.Getpid()))
	if err := os.WriteFile(name, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(name) })
	if err := unix.Mount(path, name, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(name, unix.MNT_DETACH) })

	exited := exec.Command("true")
	if err := exited.Run(); err != nil {
		t.Fatal(err)
	}
	ns := Namespace{Inode: ino, Path: name, Name: filepath.Base(name), PID: exited.Process.Pid}
	c, err := ns.read()
	if err != nil {
		t.Fatalf("reading %+v: %v", ns, err)
	}
	if c.CPUs < 1 || c.Entries != 0 {
		t.Errorf("fresh netns read as %+v", c)
	}
	unnamed := ns
	unnamed.Path = fmt.Sprintf("/proc/%d/ns/net", exited.Process.Pid)
	if _, err := unnamed.read(); err == nil {
		t.Errorf("%+v: read a netns through an exited process", unnamed)
	}
	renamed := ns
	renamed.Inode++
	if _, err := renamed.read(); err == nil || !strings.Contains(err.Error(), "no longer names") {
		t.Errorf("%+v: err = %v, want the name refused", renamed, err)
	}
}
