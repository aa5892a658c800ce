package doctor

import (
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ResolvConf is what a resolver reads from /etc/resolv.conf.
type ResolvConf struct {
	Nameservers []string `json:"nameservers"`
	Options     []string `json:"options"`
}

// maxResolvConf bounds what is read of a resolv.conf: glibc reads at most
// three nameservers, and a real file is a few hundred bytes.
const maxResolvConf = 64 << 10

// ParseResolvConf reads resolv.conf(5): "nameserver ADDR" and "options
// OPT..." lines (later options add to earlier ones); comments start with
// '#' or ';'. Other keywords (search, domain, sortlist) are ignored.
func ParseResolvConf(data []byte) ResolvConf {
	var rc ResolvConf
	if len(data) > maxResolvConf {
		data = data[:maxResolvConf]
	}
	for _, line := range strings.Split(string(data), "\n") {
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			rc.Nameservers = append(rc.Nameservers, f[1])
		case "options":
			rc.Options = append(rc.Options, f[1:]...)
		}
	}
	return rc
}

func (rc ResolvConf) has(opt string) bool { return slices.Contains(rc.Options, opt) }

// Libc names the C library a program runs with, from its ELF interpreter.
type Libc string

const (
	LibcGlibc  Libc = "glibc"
	LibcMusl   Libc = "musl"
	LibcStatic Libc = "static" // no interpreter: no C library resolver (Go's own, or none)
	LibcOther  Libc = "other"
)

// libcOf reads the PT_INTERP of an executable: /lib/ld-musl-*.so.1 is
// musl, ld-linux*.so.* (and ld64.so.*) is glibc.
func libcOf(exe string) (Libc, string, error) {
	f, err := elf.Open(exe)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, min(p.Filesz, 4096))
		if _, err := p.ReadAt(b, 0); err != nil {
			return "", "", fmt.Errorf("%s: PT_INTERP: %w", exe, err)
		}
		interp := unix.ByteSliceToString(b)
		base := filepath.Base(interp)
		switch {
		case strings.HasPrefix(base, "ld-musl"):
			return LibcMusl, interp, nil
		case strings.HasPrefix(base, "ld-linux"), strings.HasPrefix(base, "ld64.so"), strings.HasPrefix(base, "ld.so"):
			return LibcGlibc, interp, nil
		}
		return LibcOther, interp, nil
	}
	return LibcStatic, "", nil
}

// Resolver is the name resolution of one group of processes in a netns
// that share a root (so a resolv.conf) and a C library.
type Resolver struct {
	PID        int         `json:"pid"` // the group's first process
	Comm       string      `json:"comm"`
	Processes  int         `json:"processes"`
	Libc       Libc        `json:"libc"`
	Interp     string      `json:"interp,omitempty"`
	ResolvConf *ResolvConf `json:"resolv_conf"` // nil: none readable
	// Parallel: the resolver sends A and AAAA at once from one UDP socket.
	Parallel bool   `json:"parallel"`
	Why      string `json:"why"`
}

// judge says whether the resolver sends A and AAAA in parallel from one
// socket (docs/kernel-notes.md, Mitigations and what each rests on):
// glibc does unless `single-request` (A, then AAAA), `single-request-reopen`
// (A, then AAAA from a new socket: glibc's send_dg sets single_request for
// both) or `use-vc` (TCP). musl reads none of these options.
func (r *Resolver) judge() {
	rc := r.ResolvConf
	switch {
	case rc == nil:
		r.Why = "no readable /etc/resolv.conf"
	case len(rc.Nameservers) == 0:
		r.Why = "no nameserver in /etc/resolv.conf"
	case r.Libc == LibcMusl:
		r.Parallel = true
		r.Why = "musl sends A and AAAA at once from one socket and has no option against it"
		if rc.has("use-vc") || rc.has("single-request") || rc.has("single-request-reopen") {
			r.Why += " (it ignores the glibc options in resolv.conf)"
		}
	case r.Libc != LibcGlibc:
		r.Why = "not a C library resolver (" + string(r.Libc) + ")"
	case rc.has("use-vc"):
		r.Why = "glibc with options use-vc: queries go over TCP"
	case rc.has("single-request"):
		r.Why = "glibc with options single-request: A, then AAAA"
	case rc.has("single-request-reopen"):
		r.Why = "glibc with options single-request-reopen: A, then AAAA from a new socket"
	default:
		r.Parallel = true
		r.Why = "glibc sends A and AAAA at once from one socket"
	}
}

// process is what a /proc scan keeps of one process.
type process struct {
	pid   int
	netns uint64
	comm  string
}

// scanProcesses lists every process with its netns inode. Kernel threads
// and processes that end meanwhile are left out.
func scanProcesses() ([]process, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var out []process
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) != nil {
			continue
		}
		out = append(out, process{pid: pid, netns: st.Ino})
	}
	return out, nil
}

// fileKey identifies a file (an executable, a root directory) across
// processes.
type fileKey struct{ dev, ino uint64 }

func statKey(path string) (fileKey, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fileKey{}, err
	}
	return fileKey{uint64(st.Dev), st.Ino}, nil
}

// resolversOf groups the processes of one netns by root directory (mount
// namespace and chroot) and C library, and reads each group's resolv.conf
// once. libcs caches each executable's library across namespaces.
func resolversOf(procs []process, libcs map[fileKey][2]string) []Resolver {
	type groupKey struct {
		mnt, root fileKey
		libc      Libc
	}
	groups := map[groupKey]*Resolver{}
	var order []groupKey
	for _, p := range procs {
		dir := "/proc/" + strconv.Itoa(p.pid)
		exeKey, err := statKey(dir + "/exe")
		if err != nil {
			continue // a kernel thread, or gone
		}
		lib, ok := libcs[exeKey]
		if !ok {
			l, interp, err := libcOf(dir + "/exe")
			if err != nil {
				continue
			}
			lib = [2]string{string(l), interp}
			libcs[exeKey] = lib
		}
		mnt, err1 := statKey(dir + "/ns/mnt")
		root, err2 := statKey(dir + "/root")
		if err1 != nil || err2 != nil {
			continue
		}
		k := groupKey{mnt, root, Libc(lib[0])}
		if g := groups[k]; g != nil {
			g.Processes++
			continue
		}
		comm, _ := os.ReadFile(dir + "/comm")
		g := &Resolver{PID: p.pid, Comm: strings.TrimSpace(string(comm)), Processes: 1, Libc: Libc(lib[0]), Interp: lib[1]}
		if data, err := readBounded(dir+"/root/etc/resolv.conf", maxResolvConf); err == nil {
			rc := ParseResolvConf(data)
			g.ResolvConf = &rc
		}
		g.judge()
		groups[k] = g
		order = append(order, k)
	}
	out := make([]Resolver, 0, len(order))
	for _, k := range order {
		if k.libc == LibcStatic || k.libc == LibcOther {
			continue // no C library resolver: nothing to judge
		}
		out = append(out, *groups[k])
	}
	return out
}

// readBounded reads at most limit bytes of a file.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}
