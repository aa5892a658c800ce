package kstat

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// freshNetns creates a network namespace owned by a parked, locked thread and
// returns its /proc path. The netns lives until the test ends.
func freshNetns(t *testing.T) string {
	t.Helper()
	type res struct {
		tid int
		err error
	}
	ready := make(chan res, 1)
	done := make(chan struct{})
	var park func()
	park = func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// On the main thread: /proc/self would follow it into the new
			// netns, and a locked main thread is never ended. Hold it and
			// unshare on another thread instead.
			go park()
			<-done
			runtime.UnlockOSThread()
			return
		}
		// Never unlocked: the thread is in the new netns and dies with
		// this goroutine.
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ready <- res{err: err}
			return
		}
		ready <- res{tid: unix.Gettid()}
		<-done
	}
	go park()
	r := <-ready
	if r.err != nil {
		t.Fatalf("unshare(CLONE_NEWNET): %v", r.err)
	}
	t.Cleanup(func() { close(done) })
	return fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), r.tid)
}

func TestReadNetnsPrivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	if _, err := os.Stat("/proc/net/stat/nf_conntrack"); err != nil {
		t.Skip("conntrack not available: ", err)
	}
	path := freshNetns(t)

	own, err := NetnsInode("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	ino, err := NetnsInode(path)
	if err != nil {
		t.Fatal(err)
	}
	if ino == 0 || ino == own {
		t.Fatalf("fresh netns inode %d, own %d", ino, own)
	}

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
	err = InNetns(path, func() error {
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
