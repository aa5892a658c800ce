package kstat

import (
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// InNetns runs fn on a fresh goroutine locked to its OS thread, after that
// thread joined the network namespace at path (/run/netns/NAME,
// /proc/PID/ns/net, ...). It waits for fn and returns its error.
//
// Why a thread: a network namespace belongs to a thread, not to a process, and
// the Go scheduler moves goroutines between threads, so the switch is only safe
// on a locked thread that no other goroutine can use meanwhile. Anything fn
// creates that binds a netns at creation time (sockets, /proc/sys and
// /proc/thread-self/net files it opens, child processes it starts) belongs to
// the target netns and may be used from any thread afterwards.
//
// Afterwards the thread goes back to its original netns and is unlocked. If
// that restore fails, the thread stays locked, so the runtime ends it when the
// goroutine returns and no other goroutine ever runs in the wrong netns.
func InNetns(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		th, err := LockThread()
		if err != nil {
			errc <- err
			return
		}
		if err := th.Enter(path); err != nil {
			errc <- errors.Join(err, th.Release())
			return
		}
		ferr := fn()
		if err := th.Release(); err != nil && ferr == nil {
			ferr = fmt.Errorf("after netns %s: %w", path, err)
		}
		errc <- ferr
	}()
	return <-errc
}

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

// NetnsInode returns the inode number of the netns at path: the number that
// `ls -L -i`, `lsns` and a tracer reading net->ns.inum show for it.
func NetnsInode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("stat netns %s: %w", path, err)
	}
	return st.Ino, nil
}
