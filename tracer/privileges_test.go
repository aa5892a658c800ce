package tracer

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/ctprobe/ctprobe/internal/privs"
	"github.com/ctprobe/ctprobe/tracer/kstat"
	"github.com/ctprobe/ctprobe/tracer/netns/netnstest"
	"github.com/ctprobe/ctprobe/tracer/probe"
)

// What each kernel range needs: CAP_SYS_ADMIN before 5.8, CAP_BPF and
// CAP_PERFMON from 5.8, and CAP_SYS_RESOURCE before 5.11 unless the
// memlock limit is already unlimited.
func TestMissingCaps(t *testing.T) {
	caps := func(cs ...int) uint64 {
		var v uint64
		for _, c := range cs {
			v |= 1 << uint(c)
		}
		return v
	}
	for _, c := range []struct {
		caps      uint64
		release   string
		unlimited bool
		want      []string
	}{
		{caps(unix.CAP_BPF, unix.CAP_PERFMON), "6.1.0", false, nil},
		{caps(unix.CAP_BPF), "6.1.0", false, []string{"CAP_PERFMON"}},
		{caps(unix.CAP_SYS_ADMIN), "6.12.0", false, nil},
		{caps(unix.CAP_BPF, unix.CAP_PERFMON), "5.10.0-32-cloud-amd64", false, []string{"CAP_SYS_RESOURCE"}},
		{caps(unix.CAP_BPF, unix.CAP_PERFMON), "5.10.0-32-cloud-amd64", true, nil},
		{caps(unix.CAP_BPF, unix.CAP_PERFMON, unix.CAP_SYS_RESOURCE), "5.10.0", false, nil},
		{caps(unix.CAP_BPF, unix.CAP_PERFMON, unix.CAP_SYS_RESOURCE), "4.19.0", false, []string{"CAP_SYS_ADMIN"}},
		{0, "5.4.0", false, []string{"CAP_SYS_ADMIN", "CAP_SYS_RESOURCE"}},
	} {
		if got := missingCaps(c.caps, parseRelease(c.release), c.unlimited); !slices.Equal(got, c.want) {
			t.Errorf("%s caps %#x unlimited %v: missing %v, want %v", c.release, c.caps, c.unlimited, got, c.want)
		}
	}
	for _, r := range []string{"4.19.0", "5.10.0", "6.1.0"} {
		if capsNeeded(parseRelease(r)) == "" {
			t.Errorf("%s: no capabilities named", r)
		}
	}
}

// dropChild passes the namespaces to read to the child process of
// TestDropPrivileges: "NETNS-PATH,PID".
const dropChild = "CTPROBE_TEST_DROP_CHILD"

// A tracer that dropped its capabilities still does all it does after
// attaching: its probe's records arrive, its maps and program statistics
// read, the kernel's counters of every netns read (one that only a bind
// mount keeps, joined; one that another user's process is in, through
// /proc/PID/net), and it detaches. Every thread keeps only what that needs,
// and what it gave up is gone (no setns, no other user's /proc/PID/ns,
// no writing where only CAP_DAC_OVERRIDE could) unless the one thread
// that needs it raises it (as a rotating capture does for
// CAP_DAC_OVERRIDE). Dropping cannot be undone,
// so the checks run in a process of their own (TestDropPrivilegesChild),
// with namespaces this one makes.
func TestDropPrivileges(t *testing.T) {
	requireRoot(t)
	if _, err := os.Stat("/proc/net/stat/nf_conntrack"); err != nil {
		t.Skip("conntrack not available: ", err)
	}
	named := bindMountedNetns(t)
	sleeper := exec.Command("sleep", "600")
	sleeper.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if err := sleeper.Start(); err != nil {
		t.Fatalf("start a process of nobody in a netns of its own: %v", err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })

	child := exec.Command(os.Args[0], "-test.run=^TestDropPrivilegesChild$", "-test.v", "-test.count=1")
	child.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d", dropChild, named, sleeper.Process.Pid))
	out, err := child.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestDropPrivilegesChild") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("child:\n%s", out)
}

// bindMountedNetns makes a netns that no process's main thread is in (a
// parked thread holds it: netnstest), bind-mounted where `ip netns add`
// puts one, and removes the mount at the end of the test.
func bindMountedNetns(t *testing.T) string {
	t.Helper()
	held := netnstest.New(t)
	if err := os.MkdirAll("/run/netns", 0o755); err != nil {
		t.Fatal(err)
	}
	path := fmt.Sprintf("/run/netns/ctprobe-drop-test-%d", os.Getpid())
	if err := os.WriteFile(path, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(held, path, "none", unix.MS_BIND, ""); err != nil {
		os.Remove(path)
		t.Fatalf("bind-mount a new netns: %v", err)
	}
	t.Cleanup(func() {
		unix.Unmount(path, unix.MNT_DETACH)
		os.Remove(path)
	})
	return path
}

// threadCaps are the capability sets of every thread of this process, as
// the kernel shows them.
func threadCaps(t *testing.T) map[string]map[string]string {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]string{}
	for _, task := range tasks {
		f, err := os.Open(filepath.Join("/proc/self/task", task.Name(), "status"))
		if err != nil {
			continue // the thread ended
		}
		fields := map[string]string{}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && (strings.HasPrefix(k, "Cap") || k == "NoNewPrivs") {
				fields[k] = strings.TrimSpace(v)
			}
		}
		f.Close()
		out[task.Name()] = fields
	}
	return out
}

func capHex(s privs.Set) string { return fmt.Sprintf("%016x", uint64(s)) }

// sysEnterProbe is a tracer with one probe that runs on every system call
// (a raw tracepoint, which attaches on this project's build machines): it
// counts its runs as records sent and sends the time of each.
func sysEnterProbe(t *testing.T) *Tracer {
	t.Helper()
	losses, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: uint32(probe.BPFLossKindLOSS_MAX)})
	if err != nil {
		t.Fatal(err)
	}
	events, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: uint32(os.Getpagesize() * 4)})
	if err != nil {
		t.Fatal(err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:    "drop_test",
		Type:    ebpf.RawTracepoint,
		License: "GPL",
		Instructions: asm.Instructions{
			// losses[LOSS_SENT]++ on this CPU
			asm.StoreImm(asm.R10, -4, int64(probe.BPFLossKindLOSS_SENT), asm.Word),
			asm.LoadMapPtr(asm.R1, losses.FD()),
			asm.Mov.Reg(asm.R2, asm.R10),
			asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "out"),
			asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
			asm.Add.Imm(asm.R1, 1),
			asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
			// send bpf_ktime_get_ns()
			asm.FnKtimeGetNs.Call(),
			asm.StoreMem(asm.R10, -16, asm.R0, asm.DWord),
			asm.LoadMapPtr(asm.R1, events.FD()),
			asm.Mov.Reg(asm.R2, asm.R10),
			asm.Add.Imm(asm.R2, -16),
			asm.Mov.Imm(asm.R3, 8),
			asm.Mov.Imm(asm.R4, 0),
			asm.FnRingbufOutput.Call(),
			asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: "sys_enter", Program: prog})
	if err != nil {
		t.Fatalf("attach to sys_enter: %v", err)
	}
	reader, err := ringbuf.NewReader(events)
	if err != nil {
		t.Fatal(err)
	}
	return &Tracer{
		progs:   []loaded{{prog, "drop_test"}},
		links:   []attached{{Link: l}},
		lossMap: losses,
		reader:  reader,
		maps:    &ebpf.Collection{Maps: map[string]*ebpf.Map{"losses": losses, "events": events}},
	}
}

// needsCapBPF says whether this kernel refuses a bpf(2) lookup in a map one
// holds without CAP_BPF: before 5.19, while unprivileged BPF is disabled
// (docs/kernel-notes.md, Capabilities after attach).
func needsCapBPF(t *testing.T) bool {
	k, err := ProbeKernel()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/sys/kernel/unprivileged_bpf_disabled")
	if err != nil {
		t.Fatal(err)
	}
	return !k.AtLeast(5, 19) && strings.TrimSpace(string(b)) != "0"
}

func TestDropPrivilegesChild(t *testing.T) {
	env := os.Getenv(dropChild)
	if env == "" {
		t.Skip("run by TestDropPrivileges, in a process of its own")
	}
	named, pidText, _ := strings.Cut(env, ",")
	pid, _ := strconv.Atoi(pidText)
	_ = rlimit.RemoveMemlock()
	inode := func(path string) uint64 {
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	namedIno, otherIno := inode(named), inode(fmt.Sprintf("/proc/%d/ns/net", pid))
	tr := sysEnterProbe(t)
	// A directory only CAP_DAC_OVERRIDE lets root write to.
	dir := t.TempDir()
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o700)
	before, err := kstat.Snapshot()
	if err != nil {
		t.Fatal(err)
	}

	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	dropped := uint64(ts.Nano())
	// Kept as a trace that rotates its capture keeps them: the kernel's
	// counters, and CAP_DAC_OVERRIDE for creating the next file.
	dacOverride := privs.Of(unix.CAP_DAC_OVERRIDE)
	effective, err := tr.DropPrivileges(kstat.Capabilities | dacOverride)
	if err != nil {
		t.Fatal(err)
	}
	want := privs.Set(0)
	if needsCapBPF(t) {
		want = privs.Of(unix.CAP_BPF)
	}
	if effective != want {
		t.Errorf("DropPrivileges left %v effective, want %v", effective, want)
	}
	for tid, caps := range threadCaps(t) {
		permitted := want | kstat.Capabilities | dacOverride
		if caps["CapEff"] != capHex(want) || caps["CapPrm"] != capHex(permitted) || caps["CapBnd"] != capHex(permitted) ||
			caps["CapInh"] != capHex(0) || caps["CapAmb"] != capHex(0) || caps["NoNewPrivs"] != "1" {
			t.Errorf("thread %s: %v; want effective %v, permitted and bounding %v, nothing inheritable or ambient, no_new_privs", tid, caps, want, permitted)
		}
	}

	// What it gave up is gone: joining a netns, another user's netns
	// link, a directory only CAP_DAC_OVERRIDE may write to.
	gone := make(chan error, 1)
	go func() {
		// Locked and never unlocked: were setns to succeed, this thread
		// would be in another netns, and ends with the goroutine.
		runtime.LockOSThread()
		gone <- func() error {
			fd, err := unix.Open(named, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			if err := unix.Setns(fd, unix.CLONE_NEWNET); !errors.Is(err, unix.EPERM) {
				return fmt.Errorf("setns after the drop: %v, want EPERM", err)
			}
			var st unix.Stat_t
			if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st); !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EPERM) {
				return fmt.Errorf("stat nobody's /proc/PID/ns/net after the drop: %v, want permission denied", err)
			}
			return nil
		}()
	}()
	if err := <-gone; err != nil {
		t.Error(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o600); !errors.Is(err, os.ErrPermission) {
		t.Errorf("writing into nobody's 0700 directory after the drop: %v, want permission denied", err)
	}
	if err := privs.Raise(dacOverride, func() error {
		if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o600); err != nil {
			return err
		}
		return os.Remove(filepath.Join(dir, "x"))
	}); err != nil {
		t.Errorf("writing into nobody's 0700 directory with CAP_DAC_OVERRIDE raised: %v", err)
	}

	// What it still does.
	sent, err := tr.Sent()
	if err != nil {
		t.Fatalf("read a map after the drop: %v", err)
	}
	if _, err := tr.Losses(); err != nil {
		t.Errorf("read losses and program statistics after the drop: %v", err)
	}
	tr.SetDeadline(time.Now().Add(5 * time.Second))
	for {
		var rec ringbuf.Record
		if err := tr.Read(&rec); err != nil {
			t.Fatalf("no record sent after the drop arrived: %v", err)
		}
		if binary.NativeEndian.Uint64(rec.RawSample) > dropped {
			break
		}
	}
	if now, err := tr.Sent(); err != nil || now <= sent {
		t.Errorf("records sent after the drop: %d then %d, %v", sent, now, err)
	}
	after, err := kstat.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	for _, ino := range []uint64{namedIno, otherIno} {
		b, a := before[ino], after[ino]
		if a.Counters.CPUs == 0 || a.Counters.CPUs != b.Counters.CPUs {
			t.Errorf("netns %d: counters over %d CPUs before the drop, %d after", ino, b.Counters.CPUs, a.Counters.CPUs)
		}
	}
	if after[otherIno].PID != pid || after[namedIno].PID != 0 {
		t.Errorf("nobody's netns read through pid %d (want %d), the bind-mounted one through pid %d (want none)", after[otherIno].PID, pid, after[namedIno].PID)
	}
	tr.Detach()
	if err := tr.Close(); err != nil {
		t.Errorf("close after the drop: %v", err)
	}
}
