package kstat

import (
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
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer unix.Close(target)

	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// /proc/self/task/TID rather than /proc/thread-self: the latter needs
		// 3.17+, this works everywhere.
		origPath := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		orig, err := unix.Open(origPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open own netns %s: %w", origPath, err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w (needs CAP_SYS_ADMIN: run as root)", path, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it dies with this goroutine.
			if ferr == nil {
				ferr = fmt.Errorf("restoring netns after %s: %w", path, err)
			}
			errc <- ferr
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
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
