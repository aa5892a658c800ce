package tracer

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	"github.com/ctprobe/ctprobe/tracer/loss"
	"github.com/ctprobe/ctprobe/tracer/mode"
	"github.com/ctprobe/ctprobe/tracer/plan"
	"github.com/ctprobe/ctprobe/tracer/probe"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF programs")
	}
}

// Every kprobe-type program must pass this kernel's verifier (they load even
// where kprobes cannot attach). Tracing programs (fentry/fexit) must either
// load or be refused by the kernel itself, never by the verifier; the VM lab
// proves that they load and attach on a distribution kernel.
func TestProgramsPassVerifier(t *testing.T) {
	requireRoot(t)
	_ = rlimit.RemoveMemlock()
	k, err := ProbeKernel()
	if err != nil {
		t.Fatal(err)
	}
	// The modes and filters are read-only data: the verifier prunes the
	// branches they turn off, so every mode and filter is loaded once.
	for _, opts := range []Options{
		{},
		{Mode: mode.Timeline},
		{Mode: mode.All},
		{Mode: mode.All, Filter: Filter{PID: 1}},
		{Mode: mode.AllTimeline, Filter: Filter{PID: 1}},
		{Mode: mode.Timeline, Filter: Filter{Proto: 17, Port: 53, Host: netip.MustParseAddr("fd00::10"), Netns: 1}},
		{Filter: Filter{Host: netip.MustParseAddr("10.96.0.10"), PID: 1}},
	} {
		spec, err := probe.LoadBPF()
		if err != nil {
			t.Fatal(err)
		}
		if err := setFilter(spec, opts); err != nil {
			t.Fatal(err)
		}
		for name, ps := range spec.Programs {
			verify(t, k, spec, name, ps, fmt.Sprintf("%+v", opts))
		}
	}
}

func verify(t *testing.T, k Kernel, spec *ebpf.CollectionSpec, name string, ps *ebpf.ProgramSpec, opts string) {
	t.Helper()
	s := spec.Copy()
	s.Programs = map[string]*ebpf.ProgramSpec{name: s.Programs[name]}
	coll, err := ebpf.NewCollection(s)
	if err == nil {
		coll.Close()
		t.Logf("%-20s %-8v loaded (%s)", name, ps.Type, opts)
		return
	}
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		t.Errorf("%s (%s): verifier rejected it: %+v", name, opts, ve)
		return
	}
	if ps.Type == ebpf.Kprobe {
		t.Errorf("%s (%s): kprobe program failed to load: %v", name, opts, err)
		return
	}
	// fentry to an inlined function has no BTF target; fentry refused
	// outright is this build machine's documented limit.
	if _, present := k.Symbols[ps.AttachTo]; present && !errors.Is(err, os.ErrPermission) {
		t.Errorf("%s (%s): tracing program failed for a reason other than the kernel refusing fentry: %v", name, opts, err)
	}
}

// On a kernel where nothing can attach, Open must fail quickly with a reason
// and a fix, and the plan must say why for each required point: in the
// default mode the clash probe and then confirm, its fallback; with
// --timeline ct_in and confirm.
func TestOpenReportsKernelLimits(t *testing.T) {
	requireRoot(t)
	k, err := ProbeKernel()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		opts           Options
		failed, unused []string
	}{
		{Options{}, []string{"clash", "confirm"}, []string{"ct_in", "nat", "origin"}},
		{Options{Mode: mode.Timeline}, []string{"ct_in", "confirm"}, nil},
		{Options{Mode: mode.All}, []string{"clash", "confirm"}, []string{"ct_in", "nat", "origin"}},
	} {
		start := time.Now()
		tr, err := Open(c.opts)
		if err == nil {
			tr.Close()
			if k.Kprobes {
				t.Skip("probes attach on this kernel; the limits path is proven on kernels without kprobes")
			}
			t.Fatal("Open succeeded on a kernel without kprobes: fentry must have attached, which this machine refuses")
		}
		if elapsed := time.Since(start); elapsed > 20*time.Second {
			t.Errorf("Open took %v to fail", elapsed)
		}
		if !k.Conntrack {
			if !strings.Contains(err.Error(), "modprobe nf_conntrack") {
				t.Errorf("error does not name the fix: %v", err)
			}
			return
		}
		if !errors.Is(err, ErrNotTraceable) {
			t.Fatalf("error is not ErrNotTraceable: %v", err)
		}
		msg := err.Error()
		if strings.Contains(msg, "\n") {
			t.Errorf("error spans lines: %q", msg)
		}
		for _, want := range []string{"__nf_conntrack_confirm", "CONFIG_KPROBES", "fentry", "ctprobe probes"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%+v: error %q lacks %q", c.opts, msg, want)
			}
		}
		byPoint := map[string]plan.Entry{}
		for _, e := range tr.Plan {
			byPoint[e.Point] = e
		}
		for _, p := range c.failed {
			e, ok := byPoint[p]
			if !ok {
				t.Fatalf("plan lacks %s: %+v", p, tr.Plan)
			}
			if e.Status != plan.Failed || !strings.Contains(e.Reason, "fentry") || !strings.Contains(e.Reason, "kprobe") {
				t.Errorf("%+v: %s: want failed with fentry and kprobe reasons, got %+v", c.opts, p, e)
			}
		}
		for _, p := range c.unused {
			if e := byPoint[p]; e.Status != plan.Unused {
				t.Errorf("%+v: %s: want unused, got %+v", c.opts, p, e)
			}
		}
	}
}

func TestKallsymsFindsClonesAndModules(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/kallsyms"
	data := "ffffffffc0a01000 t init_conntrack.isra.0\t[nf_conntrack]\n" +
		"ffffffffc0a02000 T __nf_conntrack_confirm\t[nf_conntrack]\n" +
		"ffffffffc0a03000 t __nf_conntrack_confirm.cold\t[nf_conntrack]\n" +
		"ffffffff81000000 T nf_conntrack_in\n" +
		"ffffffff81000100 d nf_nat_setup_info\n" +
		"ffffffff81000200 t nf_ct_resolve_clash.constprop.0\n"
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	syms, err := readKallsyms(path, []string{"__nf_conntrack_confirm", "nf_conntrack_in", "nf_nat_setup_info", "nf_ct_resolve_clash"})
	if err != nil {
		t.Fatal(err)
	}
	if s := syms["__nf_conntrack_confirm"]; !s.Exact("__nf_conntrack_confirm") || s.Module != "nf_conntrack" || len(s.Names) != 1 {
		t.Errorf("confirm: %+v (the .cold part must not count)", s)
	}
	if s := syms["nf_conntrack_in"]; !s.Exact("nf_conntrack_in") || s.Module != "" {
		t.Errorf("ct_in: %+v", s)
	}
	if _, ok := syms["nf_nat_setup_info"]; ok {
		t.Error("a data symbol was taken for a function")
	}
	if s := syms["nf_ct_resolve_clash"]; s.Exact("nf_ct_resolve_clash") || len(s.Names) != 1 || s.Names[0] != "nf_ct_resolve_clash.constprop.0" {
		t.Errorf("clone: %+v", s)
	}
}

// cilium/ebpf names a tracefs kprobe event after its symbol with each run of
// non-alphanumeric characters made one underscore; 6.1 lists kretprobes
// with maxactive in kprobe_profile under that name (seen in the VM lab).
func TestKprobeProfileMissed(t *testing.T) {
	profile := "  _nf_conntrack_confirm                                    120               3\n" +
		"  nf_conntrack_in                                         5000              0\n" +
		"  __nf_conntrack_confirm                                    77              77\n" +
		"  _nf_conntrack_confirm                                     10               2\n" +
		"  nf_ct_resolve_clash_constprop_0                           10               4\n"
	if n, ok := kprobeProfileMissed(profile, "__nf_conntrack_confirm"); !ok || n != 5 {
		t.Errorf("got %d %v, want 5 true", n, ok)
	}
	if n, ok := kprobeProfileMissed(profile, "nf_ct_resolve_clash.constprop.0"); !ok || n != 4 {
		t.Errorf("clone: got %d %v, want 4 true", n, ok)
	}
	if _, ok := kprobeProfileMissed(profile, "nf_nat_setup_info"); ok {
		t.Error("found a probe that is not there")
	}
}

func TestParseRelease(t *testing.T) {
	for r, want := range map[string][3]int{
		"6.1.0-50-cloud-amd64": {6, 1, 0}, "6.18.44-fc-v669": {6, 18, 44}, "4.19.0-27-amd64": {4, 19, 0}, "6.12.57+deb13-amd64": {6, 12, 57},
	} {
		if got := parseRelease(r); got != want {
			t.Errorf("%s: got %v want %v", r, got, want)
		}
	}
}

// Without a BPF ring buffer (before 5.8) nothing can reach user space: the
// error says so and names the fix; other probe failures keep their cause.
func TestRingBufferSupported(t *testing.T) {
	if err := ringBufferSupported(nil, "6.1.0"); err != nil {
		t.Errorf("supported: %v", err)
	}
	err := ringBufferSupported(fmt.Errorf("map type RingBuf: %w", ebpf.ErrNotSupported), "5.4.0-150-generic")
	if !errors.Is(err, ErrNotTraceable) || !strings.Contains(err.Error(), "5.4.0-150-generic") || !strings.Contains(err.Error(), "5.8") {
		t.Errorf("unsupported: %v", err)
	}
	other := errors.New("operation not permitted")
	if err := ringBufferSupported(other, "6.1.0"); !errors.Is(err, other) || errors.Is(err, ErrNotTraceable) {
		t.Errorf("probe failure: %v", err)
	}
}

// Parameter counts come from this kernel's BTF, read once at start:
// __nf_conntrack_confirm(skb) has one, nf_conntrack_in(skb, state) two
// since 4.20.
func TestProbeKernelReadsParams(t *testing.T) {
	k, err := ProbeKernel()
	if err != nil {
		t.Fatal(err)
	}
	if !k.BTF || !k.Conntrack {
		t.Skip("needs BTF and nf_conntrack loaded")
	}
	if n := k.funcParams("__nf_conntrack_confirm"); n != 1 {
		t.Errorf("__nf_conntrack_confirm: %d parameters, want 1", n)
	}
	if n := k.funcParams("nf_conntrack_in"); n != 2 {
		t.Errorf("nf_conntrack_in: %d parameters, want 2", n)
	}
	if n := k.funcParams("no_such_function"); n != -1 {
		t.Errorf("unknown function: %d", n)
	}
}

// A kernel whose tracing programs have no task storage (before 5.13) gets
// no task storage map, which before 5.11 could not even be made, and --all's
// kprobe pair then loads with the entries map.
func TestLoadWithoutTaskStorage(t *testing.T) {
	requireRoot(t)
	_ = rlimit.RemoveMemlock()
	tr := &Tracer{Kernel: Kernel{TaskStorage: false}}
	defer tr.Close()
	if err := tr.load(Options{Mode: mode.All}); err != nil {
		t.Fatal(err)
	}
	if _, ok := tr.maps.Maps[probe.BPFMapConfirmSkb]; ok {
		t.Errorf("map %s made without task storage", probe.BPFMapConfirmSkb)
	}
	pair := pointByName(t, "confirm").candidates(tr.Kernel, mode.All, func(p string) bool { return p == "clash" })[0].kprobe
	for _, name := range []string{pair.entry, pair.exit} {
		if _, err := tr.loadProgram(name, ""); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := tr.loadProgram(probe.BPFProgKprobeConfirmTask, ""); err == nil || !strings.Contains(err.Error(), probe.BPFMapConfirmSkb) {
		t.Errorf("%s without its map: %v", probe.BPFProgKprobeConfirmTask, err)
	}
}

// Where BTF does not describe the conntrack functions (a module without
// BTF: Debian 11's 5.10) and kprobes are missing too, the plan, Fentry and
// the error all say that fentry could not be tried and why.
func TestNoModuleBTFIsTheFentryReason(t *testing.T) {
	mod := func(fn string) Symbol { return Symbol{Names: []string{fn}, Module: "nf_conntrack"} }
	tr := &Tracer{Kernel: Kernel{Release: "5.10.0-32-cloud-amd64", Version: [3]int{5, 10, 0}, BTF: true, Conntrack: true,
		Symbols: map[string]Symbol{
			"nf_ct_resolve_clash":    mod("nf_ct_resolve_clash"),
			"__nf_conntrack_confirm": mod("__nf_conntrack_confirm"),
		}}}
	tr.attach(Options{})
	if got := tr.Fentry(); !strings.HasPrefix(got, "no: ") || !strings.Contains(got, "CONFIG_DEBUG_INFO_BTF_MODULES") {
		t.Errorf("Fentry() = %q", got)
	}
	err := tr.requiredAttached()
	if !errors.Is(err, ErrNotTraceable) || !strings.Contains(err.Error(), "CONFIG_DEBUG_INFO_BTF_MODULES") || !strings.Contains(err.Error(), "CONFIG_KPROBES") {
		t.Errorf("error %v", err)
	}
}

// A program the verifier refuses is reported with the verifier's own
// reason, as the kernel logged it, not only the errno.
func TestVerifierRejectionSaysWhy(t *testing.T) {
	requireRoot(t)
	_ = rlimit.RemoveMemlock()
	// Returns without setting R0: every verifier refuses it.
	_, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.Kprobe,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Return()},
	})
	var ve *ebpf.VerifierError
	if !errors.As(err, &ve) {
		t.Fatalf("want a verifier error, got %v", err)
	}
	msg := shortError(err).Error()
	if !strings.Contains(msg, "R0 !read_ok") || strings.Contains(msg, "processed ") || strings.Contains(msg, "\n") {
		t.Errorf("%q: want the verifier's reason on one line, without its statistics; the log was:\n%s", msg, strings.Join(ve.Log, "\n"))
	}
}

// Runs the kernel skipped are reported per program. A raw tracepoint
// program on bpf_trace_printk that itself calls bpf_trace_printk re-enters
// once through the tracepoint, and the kernel skips the entry after that
// (its recursion_misses count, 5.12+; per raw tracepoint program 6.2+).
func TestRecursionMissesAreLosses(t *testing.T) {
	requireRoot(t)
	_ = rlimit.RemoveMemlock()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:    "printk_loop",
		Type:    ebpf.RawTracepoint,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R1, 'x'),
			asm.StoreMem(asm.R10, -8, asm.R1, asm.DWord),
			asm.Mov.Reg(asm.R1, asm.R10),
			asm.Add.Imm(asm.R1, -8),
			asm.Mov.Imm(asm.R2, 2),
			asm.FnTracePrintk.Call(),
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: "bpf_trace_printk", Program: prog})
	if err != nil {
		t.Skipf("attach to bpf_trace_printk: %v", err)
	}
	defer l.Close()
	if _, err := prog.Run(&ebpf.RunOptions{}); err != nil {
		t.Skipf("test run of a raw tracepoint program: %v", err)
	}
	st, err := prog.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.RecursionMisses == 0 {
		t.Skip("this kernel does not count a raw tracepoint program's recursion (before 6.2)")
	}
	losses, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: uint32(probe.BPFLossKindLOSS_MAX)})
	if err != nil {
		t.Fatal(err)
	}
	defer losses.Close()
	tr := &Tracer{progs: []loaded{{prog, "printk_loop"}}, lossMap: losses}
	got, err := tr.Losses()
	if err != nil {
		t.Fatal(err)
	}
	want := loss.Count{Kind: loss.RecursionMissed, Where: "printk_loop", CPU: -1, Count: st.RecursionMisses}
	if len(got) != 1 || got[0] != want {
		t.Errorf("Losses() = %+v, want [%+v]", got, want)
	}
}

// closeOrder is a link that records when it is closed.
type closeOrder struct {
	link.Link // nil: only Close is called
	name      string
	closed    *[]string
}

func (c closeOrder) Close() error {
	*c.closed = append(*c.closed, c.name)
	return nil
}

// Detach must never leave an exit program attached without its entry
// program: the exit would run for calls that entered after the entry was
// gone, and count each as a loss (issue 14). Links are kept in attach order
// (each point's entry before its exit, points in plan order), and Detach
// closes them in reverse.
func TestDetachClosesExitsBeforeEntries(t *testing.T) {
	var closed []string
	tr := &Tracer{}
	for _, name := range []string{"ct_in entry", "ct_in exit", "clash entry", "confirm entry", "confirm exit", "origin"} {
		tr.links = append(tr.links, attached{Link: closeOrder{name: name, closed: &closed}})
	}
	tr.Detach()
	want := []string{"origin", "confirm exit", "confirm entry", "clash entry", "ct_in exit", "ct_in entry"}
	if fmt.Sprint(closed) != fmt.Sprint(want) {
		t.Errorf("closed %q, want %q", closed, want)
	}
	if tr.links != nil {
		t.Errorf("links left after Detach: %d", len(tr.links))
	}
}
