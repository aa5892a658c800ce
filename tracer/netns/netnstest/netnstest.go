// Package netnstest makes network namespaces for tests.
package netnstest

import (
	"fmt"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// New creates a network namespace owned by a parked, locked thread and
// returns its /proc path. The netns lives until the test ends. It skips the
// test unless it runs as root.
func New(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
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
	t.Cleanup(func() { close(done) })
	go park()
	r := <-ready
	if r.err != nil {
		t.Fatalf("unshare(CLONE_NEWNET): %v", r.err)
	}
	return fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), r.tid)
}
