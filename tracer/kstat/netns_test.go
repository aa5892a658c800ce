package kstat

import (
	"fmt"
	"os"
	"os/exec"
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
