package kstat

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ctprobe/ctprobe/internal/privs"
	"github.com/ctprobe/ctprobe/tracer/netns"
)

// namedDir is where `ip netns add` (and CNI plugins) bind-mount the
// namespaces they name.
const namedDir = "/run/netns"

// Namespace is a network namespace found on the host.
type Namespace struct {
	Inode uint64
	Path  string // a path that opens it: /run/netns/NAME or /proc/PID/ns/net
	Name  string // "NAME" for /run/netns, else "pid PID (comm)"
	// PID is a process in the netns (its main thread), whose
	// /proc/PID/net shows the netns without joining it; 0 if none was
	// found, as for a netns that only a bind mount keeps.
	PID int
}

// Namespaces lists the network namespaces reachable through /run/netns (as
// `ip netns add` names them) and through every process's /proc/PID/ns/net,
// one entry per inode; a named path is preferred. A process's comm is read
// only for a namespace not seen yet: a node has thousands of processes and a
// few dozen namespaces, and --interval lists them each time.
func Namespaces() ([]Namespace, error) {
	index := map[uint64]int{}
	var out []Namespace
	add := func(path string, pid int, name func() string) {
		ino, err := netns.Inode(path)
		if err != nil {
			return
		}
		if i, seen := index[ino]; seen {
			if out[i].PID == 0 {
				out[i].PID = pid
			}
			return
		}
		index[ino] = len(out)
		out = append(out, Namespace{Inode: ino, Path: path, Name: name(), PID: pid})
	}
	if named, err := os.ReadDir(namedDir); err == nil {
		for _, e := range named {
			add(filepath.Join(namedDir, e.Name()), 0, e.Name)
		}
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list network namespaces: %w", err)
	}
	for _, e := range procs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		add(filepath.Join("/proc", e.Name(), "ns", "net"), pid, func() string {
			comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
			return fmt.Sprintf("pid %d (%s)", pid, strings.TrimSpace(string(comm)))
		})
	}
	return out, nil
}

// named: the namespace was found through /run/netns, whose bind mount
// keeps it whether or not a process is in it.
func (ns Namespace) named() bool { return strings.HasPrefix(ns.Path, namedDir+"/") }

// Reading is one namespace's counters at one moment.
type Reading struct {
	Namespace
	Counters Counters
}

// Capabilities are what Snapshot needs after a tracer dropped the rest
// (tracer.DropPrivileges): CAP_SYS_PTRACE to look at other users' and more
// privileged processes' /proc/PID/ns/net (proc_ns_get_link checks
// ptrace_may_access, PTRACE_MODE_READ), and CAP_SYS_ADMIN to setns(2) into
// a netns no process is in. Snapshot raises them only on the thread that
// reads, for as long as it reads (privs.Raise).
var Capabilities = privs.Of(unix.CAP_SYS_PTRACE, unix.CAP_SYS_ADMIN)

// Snapshot reads the counters of every network namespace on the host, keyed
// by inode. Namespaces that vanish while it runs are left out. A netns
// with a process in it is read through /proc/PID/net, which needs no
// setns(2); only one that no process is in is joined.
func Snapshot() (map[uint64]Reading, error) {
	var out map[uint64]Reading
	err := privs.Raise(Capabilities, func() error {
		nss, err := Namespaces()
		if err != nil {
			return err
		}
		out = make(map[uint64]Reading, len(nss))
		for _, ns := range nss {
			c, err := ns.read()
			if err != nil {
				continue
			}
			out[ns.Inode] = Reading{Namespace: ns, Counters: c}
		}
		return nil
	})
	return out, err
}

// read reads the namespace's counters: through a process in it where there
// is one, else by joining it on the calling thread (Snapshot's, which holds
// the capability). A named namespace is joined too when its process exited
// or left it since the listing: the name keeps it, and leaving it out would
// hold its series at an old reading until the next scrape.
func (ns Namespace) read() (Counters, error) {
	if ns.PID != 0 {
		c, err := readProcess(ns.PID, ns.Inode)
		if err == nil || errors.Is(err, ErrNoConntrack) || !ns.named() {
			return c, err
		}
	}
	var c Counters
	err := netns.In(ns.Path, func() error {
		// The path may name another namespace by now (a name removed
		// and added again).
		if ino, err := netns.Inode("/proc/thread-self/ns/net"); err != nil || ino != ns.Inode {
			return errors.Join(fmt.Errorf("%s no longer names netns %d", ns.Path, ns.Inode), err)
		}
		var err error
		c, err = Read()
		return err
	})
	return c, err
}

// readProcess reads the counters of the netns inode through /proc/PID/net.
// The process may exit meanwhile and its pid be reused, or it may move to
// another netns: everything is read through one descriptor of its /proc
// directory (which stays with the process, not the pid), and the netns is
// checked before and after.
func readProcess(pid int, inode uint64) (Counters, error) {
	dir := "/proc/" + strconv.Itoa(pid)
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Counters{}, fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(dfd)
	same := func() error {
		var st unix.Stat_t
		if err := unix.Fstatat(dfd, "ns/net", &st, 0); err != nil {
			return fmt.Errorf("stat %s/ns/net: %w", dir, err)
		}
		if st.Ino != inode {
			return fmt.Errorf("%s left netns %d", dir, inode)
		}
		return nil
	}
	if err := same(); err != nil {
		return Counters{}, err
	}
	fd, err := unix.Openat(dfd, "net/stat/nf_conntrack", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return Counters{}, ErrNoConntrack
	}
	if err != nil {
		return Counters{}, fmt.Errorf("open %s/net/stat/nf_conntrack: %w", dir, err)
	}
	f := os.NewFile(uintptr(fd), dir+"/net/stat/nf_conntrack")
	data, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return Counters{}, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	if err := same(); err != nil {
		return Counters{}, err
	}
	c, err := Parse(data)
	if err != nil {
		return c, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return c, nil
}

// Values returns the counters that account for races, keyed as ctprobe
// prints them; counters this kernel lacks are absent.
func (c Counters) Values() map[string]uint64 {
	// early_drop and invalid say which kernel reasons explain drops that
	// are not clashes (a full table, a tracker refusing a packet).
	v := map[string]uint64{"insert_failed": c.InsertFailed, "drop": c.Drop, "early_drop": c.EarlyDrop, "invalid": c.Invalid}
	if c.HasClashResolve {
		v["clash_resolve"] = c.ClashResolve
	}
	if c.HasChainTooLong {
		v["chain_too_long"] = c.ChainTooLong
	}
	return v
}
