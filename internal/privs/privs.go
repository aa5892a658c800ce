// Package privs drops a process's Linux capabilities, and raises one it
// kept only on the thread that needs it, for as long as it needs it.
//
// Capabilities belong to threads, not to processes, and a Go program has
// many threads that the runtime starts and shares between goroutines: Drop
// changes every thread at once (syscall.AllThreadsSyscall), and Raise
// works on a goroutine locked to its thread, which gives its capabilities
// back before it is unlocked (or ends with its goroutine). New threads are
// cloned from the runtime's template thread while a goroutine is locked
// (runtime.newm), never from a thread with raised capabilities.
package privs

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Set is a set of capabilities: bit n is capability n (unix.CAP_*).
type Set uint64

// Of is the set of caps.
func Of(caps ...int) Set {
	var s Set
	for _, c := range caps {
		s |= 1 << c
	}
	return s
}

// names are the capabilities this project speaks of; others print as
// cap_N.
var names = map[int]string{
	unix.CAP_DAC_OVERRIDE: "cap_dac_override",
	unix.CAP_NET_ADMIN:    "cap_net_admin",
	unix.CAP_SYS_ADMIN:    "cap_sys_admin",
	unix.CAP_SYS_PTRACE:   "cap_sys_ptrace",
	unix.CAP_PERFMON:      "cap_perfmon",
	unix.CAP_BPF:          "cap_bpf",
}

// String is "cap_bpf,cap_sys_ptrace", or "none".
func (s Set) String() string {
	var out []string
	for c := range 64 {
		if s&(1<<c) == 0 {
			continue
		}
		if n, ok := names[c]; ok {
			out = append(out, n)
		} else {
			out = append(out, "cap_"+strconv.Itoa(c))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ",")
}

// threadCaps reads the calling thread's capabilities.
func threadCaps() (unix.CapUserHeader, [2]unix.CapUserData, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return hdr, data, fmt.Errorf("capget: %w", err)
	}
	return hdr, data, nil
}

func effectiveOf(data [2]unix.CapUserData) Set {
	return Set(data[0].Effective) | Set(data[1].Effective)<<32
}

func permittedOf(data [2]unix.CapUserData) Set {
	return Set(data[0].Permitted) | Set(data[1].Permitted)<<32
}

// Current returns the calling thread's effective and permitted
// capabilities.
func Current() (effective, permitted Set, err error) {
	_, data, err := threadCaps()
	return effectiveOf(data), permittedOf(data), err
}

// allThreads runs a system call on every thread of the process.
func allThreads(what string, trap, a1, a2, a3 uintptr) error {
	if _, _, errno := syscall.AllThreadsSyscall(trap, a1, a2, a3); errno != 0 {
		if errno == syscall.ENOTSUP {
			return fmt.Errorf("%s on every thread: not possible in a program built with cgo (build it with CGO_ENABLED=0)", what)
		}
		return fmt.Errorf("%s on every thread: %w", what, errno)
	}
	return nil
}

// lastCap is the highest capability this kernel knows.
func lastCap() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if n, perr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && perr == nil && n < 64 {
		return n
	}
	return unix.CAP_LAST_CAP
}

// Drop leaves every thread of the process with effective capabilities
// effective, and permitted ones effective and permittedOnly (each only
// where it is permitted now), and nothing else: no inheritable or ambient
// capabilities, a bounding set cut to the permitted ones (where
// CAP_SETPCAP allows it) and no_new_privs set, so that no execve(2) can
// regain what was dropped. Drop only removes: it never grants a
// capability the process does not have.
func Drop(effective, permittedOnly Set) error {
	_, now, err := Current()
	if err != nil {
		return err
	}
	permitted := (effective | permittedOnly) & now
	effective &= permitted
	// The bounding set first: cutting it needs CAP_SETPCAP, which capset
	// drops.
	if now&Of(unix.CAP_SETPCAP) != 0 {
		for c := 0; c <= lastCap(); c++ {
			if permitted&(1<<c) == 0 {
				if err := allThreads("drop "+Set(1<<c).String()+" from the bounding set", unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); err != nil {
					return err
				}
			}
		}
	}
	// Ambient capabilities exist since 4.3; before, there is nothing to clear.
	if err := allThreads("clear ambient capabilities", unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return err
	}
	if err := allThreads("set no_new_privs", unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); err != nil {
		return err
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(effective), Permitted: uint32(permitted)},
		{Effective: uint32(effective >> 32), Permitted: uint32(permitted >> 32)},
	}
	err = allThreads("capset", unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	runtime.KeepAlive(&hdr)
	runtime.KeepAlive(&data)
	return err
}

// Raise runs fn on a goroutine locked to a thread whose effective set has
// caps added, where they are permitted; Lower runs it with caps taken
// away. Either way the thread gets its own set back before it serves any
// other goroutine; if that fails it stays locked, and the runtime ends it
// with the goroutine.
func Raise(caps Set, fn func() error) error {
	return onThread(func(effective, permitted Set) Set { return effective | caps&permitted }, fn)
}

// Lower is Raise with caps taken away from the thread's effective set.
func Lower(caps Set, fn func() error) error {
	return onThread(func(effective, _ Set) Set { return effective &^ caps }, fn)
}

func onThread(change func(effective, permitted Set) Set, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		hdr, orig, err := threadCaps()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		during := orig
		effective := change(effectiveOf(orig), permittedOf(orig))
		during[0].Effective, during[1].Effective = uint32(effective), uint32(effective>>32)
		changed := during != orig
		if changed {
			if err := unix.Capset(&hdr, &during[0]); err != nil {
				runtime.UnlockOSThread()
				errc <- fmt.Errorf("capset: %w", err)
				return
			}
		}
		ferr := fn()
		if changed {
			if err := unix.Capset(&hdr, &orig[0]); err != nil {
				// The thread stays locked, and ends with this goroutine.
				errc <- errors.Join(ferr, fmt.Errorf("capset: %w", err))
				return
			}
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
