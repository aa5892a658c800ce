package names

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ctprobe/ctprobe/internal/privs"
)

// Capabilities are what reading another process's network namespace takes
// once a trace has dropped its effective set (tracer.DropPrivileges): the
// /proc/PID/ns/net link is behind a ptrace access check (proc_ns_get_link,
// PTRACE_MODE_READ_FSCREDS), which a process whose permitted set is not a
// subset of ours, i.e. every container's, passes only with CAP_SYS_PTRACE
// (cap_ptrace_access_check). It is raised on the reading thread alone, for
// the read (privs.Raise); without it being permitted, the read fails as it
// would have.
var Capabilities = privs.Of(unix.CAP_SYS_PTRACE)

// node reads what the node itself says of its pods and namespaces, under a
// host path prefix (a DaemonSet mounts the host's / at /host, and runs in
// the host's PID namespace so that /host/proc holds the host's processes).
type node struct {
	root string // "" or "/": this machine's own paths
}

func (n node) path(p string) string { return filepath.Join(n.root, p) }

// maxCgroupFile bounds the read of /proc/PID/cgroup (a v1 host has a line
// per controller, a dozen at most).
const maxCgroupFile = 16 << 10

// cgroup reads the pod and container of a process from /proc/PID/cgroup.
func (n node) cgroup(pid uint32) (Cgroup, error) {
	f, err := os.Open(n.path("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/cgroup"))
	if err != nil {
		return Cgroup{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCgroupFile))
	if err != nil {
		return Cgroup{}, err
	}
	return ParseCgroupFile(b), nil
}

// netnsOf reads the inode of a process's network namespace from the
// /proc/PID/ns/net link ("net:[4026531840]").
func (n node) netnsOf(pid string) (uint32, error) {
	l, err := os.Readlink(n.path("/proc/" + pid + "/ns/net"))
	if err != nil {
		return 0, err
	}
	s, ok := strings.CutPrefix(l, "net:[")
	if !ok || !strings.HasSuffix(s, "]") {
		return 0, fmt.Errorf("unexpected netns link %q", l)
	}
	v, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 32)
	return uint32(v), err
}

// podProcess is the process a pod's namespace was found by.
type podProcess struct {
	cg  Cgroup
	pid string
}

// holds reports whether process pid is still in namespace ino: a
// namespace's inode number is reused once it is freed (docs/kernel-notes.md,
// Namespaces, cgroups and pods), so a pod's namespace seen at the last
// refresh may now be another's.
func (n node) holds(pid string, ino uint32) bool {
	var got uint32
	err := privs.Raise(Capabilities, func() (err error) {
		got, err = n.netnsOf(pid)
		return err
	})
	return err == nil && got == ino
}

// hostNetns is the network namespace of PID 1: the node's.
func (n node) hostNetns() (uint32, error) { return n.netnsOf("1") }

// netnsNames maps the inode of every namespace named in /run/netns (`ip
// netns add`, and the cni-<uuid> files containerd and CRI-O bind their
// pods' namespaces to) to its name. A missing directory is no error.
func (n node) netnsNames(limit int) (map[uint32]string, error) {
	dir := n.path("/run/netns")
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[uint32]string{}
	for _, e := range ents {
		if len(out) >= limit {
			break
		}
		var st unix.Stat_t
		// A stale file (its namespace gone) is an ordinary empty file on
		// the tmpfs, not an nsfs mount: skip it.
		if unix.Stat(filepath.Join(dir, e.Name()), &st) != nil || st.Dev == 0 {
			continue
		}
		var sfs unix.Statfs_t
		if unix.Statfs(filepath.Join(dir, e.Name()), &sfs) != nil || sfs.Type != unix.NSFS_MAGIC {
			continue
		}
		out[uint32(st.Ino)] = Clip(e.Name())
	}
	return out, nil
}

// scanPods walks /proc for processes in network namespaces that are not
// the host's, and maps each such namespace to the pod
// and container its first process's cgroup path names. A pod sandbox's
// processes (the pause process, and every container of the pod) share the
// pod's namespace. It reads one link per process and one cgroup file per
// namespace, and stops at limit namespaces. Every refresh scans anew: the
// kernel reuses a freed namespace's inode number, so a mapping kept from
// before could name a new pod after a dead one.
func (n node) scanPods(host uint32, limit int) (map[uint32]podProcess, error) {
	ents, err := os.ReadDir(n.path("/proc"))
	if err != nil {
		return nil, err
	}
	out := map[uint32]podProcess{}
	seen := map[uint32]bool{}
	for _, e := range ents {
		if len(seen) >= limit {
			break
		}
		pid := e.Name()
		if pid[0] < '0' || pid[0] > '9' {
			continue
		}
		ino, err := n.netnsOf(pid)
		if err != nil || ino == host || seen[ino] {
			continue // a process that exited, or a kernel thread
		}
		v, _ := strconv.ParseUint(pid, 10, 32)
		cg, err := n.cgroup(uint32(v))
		if err != nil || cg.PodUID == "" && cg.ContainerID == "" {
			continue // another process of this netns may name it
		}
		seen[ino] = true
		out[ino] = podProcess{cg: cg, pid: pid}
	}
	return out, nil
}
