package netns_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ctprobe/ctprobe/tracer/netns"
	"github.com/ctprobe/ctprobe/tracer/netns/netnstest"
)

// threadInode is the netns of the calling thread, which Run's fn is
// locked to. It may run on any goroutine.
func threadInode(t *testing.T) uint64 {
	t.Helper()
	ino, err := netns.Inode("/proc/thread-self/ns/net")
	if err != nil {
		t.Error(err)
	}
	return ino
}

func TestInode(t *testing.T) {
	own, err := netns.Inode("/proc/self/ns/net")
	if err != nil || own == 0 {
		t.Fatalf("own netns inode %d, %v", own, err)
	}
	_, err = netns.Inode("/nonexistent/netns")
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/netns") {
		t.Fatalf("err = %v", err)
	}
}

func TestRunPrivileged(t *testing.T) {
	path := netnstest.New(t)
	own, err := netns.Inode("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	ino, err := netns.Inode(path)
	if err != nil {
		t.Fatal(err)
	}
	if ino == 0 || ino == own {
		t.Fatalf("fresh netns inode %d, own %d", ino, own)
	}

	var inside uint64
	errFn := errors.New("fn's error")
	err = netns.Run(path, func() error {
		inside = threadInode(t)
		return errFn
	})
	if !errors.Is(err, errFn) {
		t.Errorf("Run returned %v, want fn's error", err)
	}
	if inside != ino {
		t.Errorf("fn ran in netns %d, want %d", inside, ino)
	}
	if now, _ := netns.Inode("/proc/self/ns/net"); now != own {
		t.Errorf("process netns %d after Run, want %d", now, own)
	}

	called := false
	err = netns.Run("/nonexistent/netns", func() error { called = true; return nil })
	if err == nil || called {
		t.Errorf("Run in a missing netns: err %v, fn called %v", err, called)
	}
}

func TestThreadPrivileged(t *testing.T) {
	path := netnstest.New(t)
	ino, err := netns.Inode(path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		th, err := netns.LockThread()
		if err != nil {
			t.Error(err)
			return
		}
		before, err := netns.Inode(th.NetnsPath())
		if err != nil {
			t.Error(err)
		}
		if err := th.Enter(path); err != nil {
			t.Error(err)
		}
		if got, _ := netns.Inode(th.NetnsPath()); got != ino {
			t.Errorf("after Enter the thread is in netns %d, want %d", got, ino)
		}
		if got := threadInode(t); got != ino {
			t.Errorf("thread-self after Enter: %d, want %d", got, ino)
		}
		// Release unlocks: read the netns before, on the same thread.
		path := th.NetnsPath()
		if err := th.Release(); err != nil {
			t.Error(err)
		}
		if got, _ := netns.Inode(path); got != before {
			t.Errorf("after Release the thread is in netns %d, want %d", got, before)
		}
	}()
	<-done
}
