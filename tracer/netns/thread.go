package netns

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// Thread is the calling goroutine locked to its OS thread, holding the netns
// the thread started in so that it can go back to it.
type Thread struct {
	orig int
	tid  int
}

// LockThread locks the calling goroutine to its OS thread and remembers the
// thread's netns. Pair it with Release on the same goroutine.
func LockThread() (*Thread, error) {
	runtime.LockOSThread()
	t := &Thread{tid: unix.Gettid()}
	var err error
	t.orig, err = unix.Open(t.NetnsPath(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("open own netns %s: %w", t.NetnsPath(), err)
	}
	return t, nil
}

// NetnsPath is the thread's current netns: /proc/self/task/TID rather than
// /proc/thread-self (3.17+) or /proc/self (the main thread's, which a locked
// goroutine may not be on).
func (t *Thread) NetnsPath() string { return fmt.Sprintf("/proc/self/task/%d/ns/net", t.tid) }

// Enter moves the thread into the netns at path.
func (t *Thread) Enter(path string) error {
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("setns %s: %w (needs CAP_SYS_ADMIN: run as root)", path, err)
	}
	return nil
}

// Release takes the thread back to its netns and unlocks it. If going back
// fails the thread stays locked, so the runtime ends it with its goroutine
// and no other goroutine ever runs in the wrong netns.
func (t *Thread) Release() error {
	err := unix.Setns(t.orig, unix.CLONE_NEWNET)
	unix.Close(t.orig)
	if err != nil {
		return fmt.Errorf("restore netns: %w", err)
	}
	runtime.UnlockOSThread()
	return nil
}
