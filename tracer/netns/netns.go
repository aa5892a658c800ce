// Package netns runs code inside a Linux network namespace and names
// namespaces by inode.
//
// A network namespace belongs to a thread, not to a process, and the Go
// scheduler moves goroutines between threads, so switching is only safe on a
// locked thread that no other goroutine can use meanwhile: Run does that for
// one function, and Thread for a goroutine that lives in a namespace for
// longer.
package netns

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Run runs fn on a fresh goroutine locked to its OS thread, after that
// thread joined the network namespace at path (/run/netns/NAME,
// /proc/PID/ns/net, ...). It waits for fn and returns its error.
//
// Anything fn creates that binds a netns at creation time (sockets,
// /proc/sys and /proc/thread-self/net files it opens, child processes it
// starts) belongs to the target netns and may be used from any thread
// afterwards.
//
// Afterwards the thread goes back to its original netns and is unlocked. If
// that restore fails, the thread stays locked, so the runtime ends it when the
// goroutine returns and no other goroutine ever runs in the wrong netns.
func Run(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() { errc <- In(path, fn) }()
	return <-errc
}

// In is Run on the calling goroutine: it locks it to its thread, joins the
// netns at path, runs fn, and goes back. A goroutine whose thread must be
// more than in the netns (kstat's, which raises capabilities on it) uses
// In; if going back fails the thread stays locked, and the goroutine must
// end without running anything else.
func In(path string, fn func() error) error {
	th, err := LockThread()
	if err != nil {
		return err
	}
	if err := th.Enter(path); err != nil {
		return errors.Join(err, th.Release())
	}
	ferr := fn()
	if err := th.Release(); err != nil && ferr == nil {
		ferr = fmt.Errorf("after netns %s: %w", path, err)
	}
	return ferr
}

// Inode returns the inode number of the netns at path: the number that
// `ls -L -i`, `lsns` and a tracer reading net->ns.inum show for it.
func Inode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("stat netns %s: %w", path, err)
	}
	return st.Ino, nil
}
