package tracer

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
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
