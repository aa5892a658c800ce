package tracer

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ctprobe/ctprobe/internal/privs"
)

// CheckPrivileges returns an error naming the capabilities that this
// process lacks to load and attach ctprobe's programs on this kernel.
func CheckPrivileges() error {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return fmt.Errorf("uname: %w", err)
	}
	release := unix.ByteSliceToString(uts.Release[:])
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read this process's capabilities: %w", err)
	}
	effective := uint64(data[1].Effective)<<32 | uint64(data[0].Effective)
	var memlock unix.Rlimit
	unlimited := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &memlock) == nil && memlock.Cur == unix.RLIM_INFINITY
	if missing := missingCaps(effective, parseRelease(release), unlimited); len(missing) > 0 {
		return fmt.Errorf("loading BPF programs on Linux %s needs %s (missing: %s): run it with sudo, or grant them",
			release, capsNeeded(parseRelease(release)), strings.Join(missing, ", "))
	}
	return nil
}

// missingCaps lists what a process with these effective capabilities lacks
// on a kernel of this version:
//   - loading and attaching tracing programs: CAP_BPF and CAP_PERFMON (5.8+,
//     a17b53c4a4b5), or CAP_SYS_ADMIN, which covers both and is the only
//     way before 5.8;
//   - before 5.11 BPF maps are charged to RLIMIT_MEMLOCK, which only
//     CAP_SYS_RESOURCE may raise past its (64 KiB) default, unless it is
//     unlimited already; from 5.11 they are charged to the memory cgroup
//     (the series ending in 3ac1f01b43b6, "bpf: Eliminate rlimit-based
//     memory accounting for bpf progs").
func missingCaps(effective uint64, v [3]int, memlockUnlimited bool) []string {
	has := func(c int) bool { return effective&(1<<uint(c)) != 0 }
	at := func(major, minor int) bool { return v[0] > major || v[0] == major && v[1] >= minor }
	var missing []string
	if !has(unix.CAP_SYS_ADMIN) {
		if !at(5, 8) {
			missing = append(missing, "CAP_SYS_ADMIN")
		} else {
			for _, c := range []struct {
				n    int
				name string
			}{{unix.CAP_BPF, "CAP_BPF"}, {unix.CAP_PERFMON, "CAP_PERFMON"}} {
				if !has(c.n) {
					missing = append(missing, c.name)
				}
			}
		}
	}
	if !at(5, 11) && !memlockUnlimited && !has(unix.CAP_SYS_RESOURCE) {
		missing = append(missing, "CAP_SYS_RESOURCE")
	}
	return missing
}

// capsNeeded says, for a kernel of this version, which capabilities do.
func capsNeeded(v [3]int) string {
	switch {
	case !(v[0] > 5 || v[0] == 5 && v[1] >= 8):
		return "root, or CAP_SYS_ADMIN and CAP_SYS_RESOURCE"
	case !(v[0] > 5 || v[0] == 5 && v[1] >= 11):
		return "root, or CAP_BPF, CAP_PERFMON and CAP_SYS_RESOURCE (BPF memory counts against RLIMIT_MEMLOCK before 5.11)"
	}
	return "root, or CAP_BPF and CAP_PERFMON"
}

// DropPrivileges gives up every capability the tracer no longer uses once
// its maps are made and its probes attached; keep are capabilities the
// caller's own work needs later (kstat.Capabilities, to read each netns's
// counters), which stay permitted but not effective, for privs.Raise. Call
// it after the last thing that needs more, such as creating the capture
// file (CAP_DAC_OVERRIDE in a directory root does not own). It returns the
// capabilities left effective.
//
// What the tracer does from here needs nothing, except on older kernels:
// it reads the ring buffer (mapped pages and epoll), closes its links, and
// reads its maps and its links' and programs' info (bpf(2) commands on
// descriptors it holds). Before 5.19 every bpf(2) command needs CAP_BPF
// while kernel.unprivileged_bpf_disabled is set (__sys_bpf; since
// c8644cd0efe7 only the commands that create objects do), so CAP_BPF stays
// where a map lookup without it is refused (docs/kernel-notes.md,
// Capabilities after attach).
func (t *Tracer) DropPrivileges(keep privs.Set) (privs.Set, error) {
	// bpf_capable() is CAP_BPF or CAP_SYS_ADMIN: try a lookup without both.
	needed := false
	err := privs.Lower(privs.Of(unix.CAP_BPF, unix.CAP_SYS_ADMIN), func() error {
		_, err := t.Sent()
		needed = errors.Is(err, unix.EPERM)
		if needed {
			return nil
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("read a map without CAP_BPF: %w", err)
	}
	effective := privs.Set(0)
	if needed {
		effective = privs.Of(unix.CAP_BPF)
	}
	if err := privs.Drop(effective, keep); err != nil {
		return 0, err
	}
	effective, _, err = privs.Current()
	return effective, err
}
