package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ctprobe/ctprobe/tracer/netns"
)

// NetnsDir is where named network namespaces live, as with `ip netns`.
const NetnsDir = "/run/netns"

// Netns is one network namespace the lab created.
type Netns struct {
	Name  string `json:"name"`
	Role  string `json:"role"` // node, node2, pod, pod2, dns1, dns2, ...
	Path  string `json:"path"`
	Inode uint64 `json:"inode"`
}

// createNetns makes a named netns the way `ip netns add` does (a new netns
// bind-mounted on /run/netns/NAME, so `ip netns list` and `ip -n` see it),
// without exec and without the mount-namespace games of `ip netns`, which
// minimal VM userlands may not support.
func createNetns(name string) (*Netns, error) {
	if err := os.MkdirAll(NetnsDir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", NetnsDir, err)
	}
	path := filepath.Join(NetnsDir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return nil, fmt.Errorf("create netns file: %w", err)
	}
	f.Close()

	errc := make(chan error, 1)
	go func() {
		th, err := netns.LockThread()
		if err != nil {
			errc <- err
			return
		}
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(fmt.Errorf("unshare(CLONE_NEWNET): %w", err), th.Release())
			return
		}
		merr := unix.Mount(th.NetnsPath(), path, "none", unix.MS_BIND, "")
		if merr != nil {
			merr = fmt.Errorf("bind-mount netns on %s: %w", path, merr)
		}
		errc <- errors.Join(merr, th.Release())
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("create netns %s: %w", name, err)
	}
	ino, err := netns.Inode(path)
	if err != nil {
		deleteNetns(path)
		return nil, err
	}
	return &Netns{Name: name, Path: path, Inode: ino}, nil
}

// deleteNetns removes a named netns like `ip netns del`: the kernel frees the
// namespace, and with it its veth/vxlan devices, once nothing references it.
func deleteNetns(path string) error {
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// cmdTimeout bounds every command the lab runs.
const cmdTimeout = 30 * time.Second

// run executes bin in the netns ns (the child is forked from a thread that
// joined ns, so it inherits it) and returns an error that includes the
// command's stderr.
func run(ctx context.Context, ns *Netns, stdin string, bin string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	var stderr bytes.Buffer
	err := netns.Run(ns.Path, func() error {
		cmd := exec.CommandContext(ctx, bin, args...)
		if stdin != "" {
			cmd.Stdin = strings.NewReader(stdin)
		}
		cmd.Stderr = &stderr
		cmd.Stdout = &stderr
		return cmd.Run()
	})
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 600 {
			msg = msg[:600] + "..."
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", err, ctx.Err())
		}
		if msg != "" {
			return fmt.Errorf("%s %s in netns %s: %w: %s", filepath.Base(bin), strings.Join(args, " "), ns.Name, err, msg)
		}
		return fmt.Errorf("%s %s in netns %s: %w", filepath.Base(bin), strings.Join(args, " "), ns.Name, err)
	}
	return nil
}

// sysctl is one /proc/sys write; optional ones may be missing (an IPv6 knob
// on a kernel without IPv6).
type sysctl struct {
	key, value string
	optional   bool
}

// writeSysctls writes /proc/sys entries of ns. The files under
// /proc/sys/net resolve to the netns of the task that opens them, so they
// are opened from a thread that joined ns.
func writeSysctls(ns *Netns, list []sysctl) error {
	return netns.Run(ns.Path, func() error {
		for _, s := range list {
			p := "/proc/sys/" + s.key
			err := os.WriteFile(p, []byte(s.value), 0o644)
			if err != nil && s.optional && errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("sysctl %s=%s in netns %s: %w", strings.ReplaceAll(s.key, "/", "."), s.value, ns.Name, err)
			}
		}
		return nil
	})
}

var leftoverRE = regexp.MustCompile(`^ctl([0-9]+)-`)

// Leftover is a lab namespace found by Cleanup.
type Leftover struct {
	Name     string
	OwnerPid int
	Alive    bool // the owning process still runs (the namespace is in use)
}

// Leftovers lists the lab's namespaces (named ctl<pid>-...) in /run/netns.
func Leftovers() ([]Leftover, error) {
	entries, err := os.ReadDir(NetnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Leftover
	for _, e := range entries {
		m := leftoverRE.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		alive := pid > 0 && unix.Kill(pid, 0) == nil
		out = append(out, Leftover{Name: e.Name(), OwnerPid: pid, Alive: alive})
	}
	return out, nil
}

// Cleanup removes lab namespaces whose owning process is gone (all of them
// when all is true) and returns the names removed; it also restores the
// global conntrack settings such topologies changed.
func Cleanup(all bool) ([]string, error) {
	list, err := Leftovers()
	if err != nil {
		return nil, err
	}
	gone := func(pid int) bool { return all || pid == os.Getpid() || pid <= 0 || unix.Kill(pid, 0) != nil }
	var removed []string
	var errs []error
	for _, l := range list {
		if !gone(l.OwnerPid) {
			continue
		}
		if err := deleteNetns(filepath.Join(NetnsDir, l.Name)); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, l.Name)
	}
	owners, err := globalOwners()
	errs = append(errs, err)
	for prefix, pid := range owners {
		if gone(pid) {
			errs = append(errs, restoreGlobals(prefix))
		}
	}
	return removed, errors.Join(errs...)
}
