// Package tracer loads ctprobe's BPF programs, attaches each probe point in
// the best mode the running kernel allows, and reads the ring buffer.
package tracer

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/ctprobe/ctprobe/tracer/probe"
)

// Filter selects flows in the kernel, before anything is recorded.
type Filter struct {
	Proto uint8      // IP protocol number, 0 for any
	Host  netip.Addr // either end of either tuple; invalid for any
	Port  uint16     // either end of either tuple; 0 for any
	Netns uint32     // netns inode; 0 for any
	PID   uint32     // tgid of the task that created the ct; 0 for any
}

// Options configure a Tracer.
type Options struct {
	Filter Filter
	// Timeline keeps each new ct's history in the kernel and sends it when
	// the ct clashes: both packets' stages (ct_in, NAT, confirm) and
	// senders across namespaces. All streams one record per new ct, at
	// confirm, besides the clashes; All with Timeline streams every event
	// of every probe point instead. Neither (the default) probes only the
	// clash path, so a packet that does not clash costs nothing.
	All, Timeline bool
	// RingSize is the ring buffer size in bytes (a power of two, >= page size).
	RingSize int
	// History is the number of conntrack entries whose history the kernel
	// keeps with Timeline.
	History int
	// MaxActive is the number of concurrent kretprobe instances per
	// function; 0 is DefaultMaxActive, and lets kprobe mode use
	// kprobe.session where it can (whose instances the kernel fixes).
	MaxActive int
	// Attach restricts the attach mode: "" tries fentry, then kprobe;
	// ModeFentry or ModeKprobe uses only that one.
	Attach Mode
	// Skip names optional probe points not to attach ("nat", "clash",
	// "origin").
	Skip []string
}

// Default sizes.
const (
	DefaultRingSize  = 4 << 20
	DefaultHistory   = 8192
	DefaultMaxActive = 1024
)

// Tracer is a set of attached probes and the ring buffer they feed.
type Tracer struct {
	Kernel Kernel
	Plan   []PlanEntry

	spec    *ebpf.CollectionSpec
	maps    *ebpf.Collection
	progs   []loaded
	links   []attached
	reader  *ringbuf.Reader
	lossMap *ebpf.Map
	// causes are the distinct reasons attaching failed, by mode ("fentry:
	// ...", "kprobe: ..."), for a short error when a required point fails.
	causes []string
	// kretMissed keeps the last kretprobe miss counts, which live in the
	// links, so that they are still reported after Detach.
	kretMissed map[string]uint64
}

// loaded is a program and its name in the object, for its statistics.
type loaded struct {
	*ebpf.Program
	name string
}

type attached struct {
	link.Link
	retprobe bool
	fn       string
}

// ErrNotTraceable means no required probe point could be attached. Its
// message names the reason and the fix.
var ErrNotTraceable = errors.New("cannot trace conntrack on this kernel")

// CheckPrivileges returns an error naming what is missing to load BPF.
func CheckPrivileges() error {
	if os.Geteuid() == 0 {
		return nil
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err == nil {
		has := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
		if has(unix.CAP_SYS_ADMIN) || (has(unix.CAP_BPF) && has(unix.CAP_PERFMON)) {
			return nil
		}
	}
	return errors.New("loading BPF programs needs root or CAP_BPF and CAP_PERFMON: run it with sudo")
}

// Open plans, loads and attaches the probes. When a required point cannot
// attach it returns an error wrapping ErrNotTraceable, with the plan filled
// in t.Plan of the returned (closed) tracer for reporting.
func Open(opts Options) (*Tracer, error) {
	if err := CheckPrivileges(); err != nil {
		return nil, err
	}
	// Before 5.11 BPF memory is charged to the user's RLIMIT_MEMLOCK
	// (64 KiB by default then), shared by every process of the user: the
	// feature probes below already create maps, and with another tracer's
	// ring buffer charged they are refused (EPERM) unless it is raised
	// first. Memlock is accounted per cgroup on 5.11+, where this is
	// harmless.
	_ = rlimit.RemoveMemlock()
	k, err := ProbeKernel()
	if err != nil {
		return nil, err
	}
	k.TaskStorage = haveTaskStorage()
	t := &Tracer{Kernel: k}
	if !k.Conntrack {
		return t, errNoConntrack
	}
	if err := ringBufferSupported(features.HaveMapType(ebpf.RingBuf), k.Release); err != nil {
		return t, err
	}
	if err := t.load(opts); err != nil {
		t.Close()
		return t, err
	}
	t.attach(opts)
	// The ELF and kernel BTF parsed to load the programs are garbage now:
	// return their memory at once, not through the runtime's background
	// scavenger while the tracer runs beside the traffic it watches.
	t.spec = nil
	debug.FreeOSMemory()
	if err := t.requiredAttached(); err != nil {
		t.Close()
		return t, err
	}
	if err := t.useWinnerLookup(); err != nil {
		t.Close()
		return t, err
	}
	t.reader, err = ringbuf.NewReader(t.maps.Maps[probe.BPFMapEvents])
	if err != nil {
		t.Close()
		return t, fmt.Errorf("open ring buffer: %w", err)
	}
	return t, nil
}

// ringBufferSupported turns the kernel's answer to "is there a BPF ring
// buffer?" (Linux 5.8+, or a backport) into the error a user can act on:
// every record travels through it.
func ringBufferSupported(probe error, release string) error {
	switch {
	case probe == nil:
		return nil
	case errors.Is(probe, ebpf.ErrNotSupported):
		return fmt.Errorf("%w: kernel %s has no BPF ring buffer (Linux 5.8+, or a distribution kernel that backports it): run ctprobe on a newer kernel", ErrNotTraceable, release)
	}
	return fmt.Errorf("probe for the BPF ring buffer: %w", probe)
}

// load creates the maps (with the filters frozen into .rodata); programs are
// loaded per attach attempt, sharing these maps.
func (t *Tracer) load(opts Options) error {
	spec, err := probe.LoadBPF()
	if err != nil {
		return fmt.Errorf("load BPF spec: %w", err)
	}
	if err := setFilter(spec, opts); err != nil {
		return err
	}
	spec.Maps[probe.BPFMapEvents].MaxEntries = uint32(orDefault(opts.RingSize, DefaultRingSize))
	// The history serves --timeline, with or without --all (bpf/ctprobe.bpf.c).
	if opts.Timeline {
		spec.Maps[probe.BPFMapHist].MaxEntries = uint32(orDefault(opts.History, DefaultHistory))
	} else {
		spec.Maps[probe.BPFMapHist].MaxEntries = 1
	}
	// Before 5.11 a task storage map cannot be made either; no program
	// that uses it is planned then.
	if !t.Kernel.TaskStorage {
		delete(spec.Maps, probe.BPFMapConfirmSkb)
	}
	mapsOnly := spec.Copy()
	mapsOnly.Programs = nil
	t.maps, err = ebpf.NewCollection(mapsOnly)
	if err != nil {
		return fmt.Errorf("create BPF maps: %w", err)
	}
	t.lossMap = t.maps.Maps[probe.BPFMapLosses]
	t.spec = spec
	return nil
}

func orDefault(v, d int) int {
	if v <= 0 {
		return d
	}
	return v
}

func setFilter(spec *ebpf.CollectionSpec, opts Options) error {
	f := opts.Filter
	set := func(name string, v any) error {
		if err := spec.Variables[name].Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
		return nil
	}
	var host [16]byte
	family := uint16(0)
	if f.Host.IsValid() {
		if f.Host.Is4() || f.Host.Is4In6() {
			a := f.Host.Unmap().As4()
			copy(host[:], a[:])
			family = unix.AF_INET
		} else {
			host = f.Host.As16()
			family = unix.AF_INET6
		}
	}
	port := f.Port<<8 | f.Port>>8 // the kernel compares __be16 values
	return errors.Join(
		set(probe.BPFVarFilterProto, f.Proto),
		set(probe.BPFVarFilterPort, port),
		set(probe.BPFVarFilterHostFamily, family),
		set(probe.BPFVarFilterHost, host),
		set(probe.BPFVarFilterNetns, f.Netns),
		set(probe.BPFVarFilterPid, f.PID),
		set(probe.BPFVarStreamConfirms, opts.All && !opts.Timeline),
		set(probe.BPFVarStreamAll, opts.All && opts.Timeline),
		set(probe.BPFVarKeepHistory, opts.Timeline && !opts.All),
	)
}

// attach walks the points: for each, the first present candidate function,
// fentry first where BTF describes it, kprobe otherwise or on failure.
func (t *Tracer) attach(opts Options) {
	for _, p := range points {
		needed, required := p.use(opts, t.attached)
		candidates := p.candidates(t.Kernel, opts, t.attached)
		e := PlanEntry{Point: p.name, Required: required, Status: StatusAbsent}
		if !needed {
			e.Function, e.Status, e.Reason = candidates[0].fn, StatusUnused, unusedReason
			t.Plan = append(t.Plan, e)
			continue
		}
		if slices.Contains(opts.Skip, p.name) {
			e.Function, e.Status, e.Reason = candidates[0].fn, StatusSkipped, "--skip-point; without it: "+p.why
			t.Plan = append(t.Plan, e)
			continue
		}
		var reasons []string
		for _, c := range candidates {
			sym, ok := t.Kernel.Symbols[c.fn]
			if !ok {
				reasons = append(reasons, c.fn+": not in kallsyms (inlined or module not loaded)")
				continue
			}
			e.Function = c.fn
			e.Status = StatusFailed
			if opts.Attach == ModeKprobe {
				reasons = append(reasons, c.fn+" fentry: not tried (--attach kprobe)")
			} else if c.fentry.exit != "" || c.fentry.entry != "" {
				if !sym.Exact(c.fn) || !t.Kernel.hasBTFFunc(c.fn) {
					reasons = append(reasons, c.fn+" fentry: no BTF for the function")
					t.cause(noBTFCause)
				} else if err := t.attachFentry(c); err != nil {
					reasons = append(reasons, fmt.Sprintf("%s fentry: %v", c.fn, err))
					t.cause(fmt.Sprintf("fentry: %v", err))
				} else {
					e.Mode, e.Status = ModeFentry, StatusAttached
					break
				}
			}
			if opts.Attach == ModeFentry {
				reasons = append(reasons, c.fn+" kprobe: not tried (--attach fentry)")
				continue
			}
			if !t.Kernel.Kprobes {
				reasons = append(reasons, c.fn+" kprobe: kernel has no kprobes (CONFIG_KPROBES off)")
				t.cause("kprobe: kernel has no kprobes (CONFIG_KPROBES off)")
				continue
			}
			mode, note, err := t.attachKprobe(c, sym.Names[0], opts.MaxActive)
			if err != nil {
				reasons = append(reasons, fmt.Sprintf("%s kprobe: %v", c.fn, err))
				t.cause(fmt.Sprintf("kprobe: %v", err))
				continue
			}
			if sym.Names[0] != c.fn {
				note = append(note, "clone "+sym.Names[0])
			}
			e.Function, e.Mode, e.Status = sym.Names[0], mode, StatusAttached
			reasons = append(reasons, note...)
			break
		}
		if e.Status != StatusAttached && e.Function == "" {
			e.Function = candidates[0].fn
		}
		if e.Status != StatusAttached {
			reasons = append(reasons, "without it: "+p.why)
		}
		e.Reason = strings.Join(reasons, "; ")
		t.Plan = append(t.Plan, e)
	}
	origin := PlanEntry{Point: "origin", Function: "net:net_dev_queue", Mode: ModeRawTP}
	switch {
	case !opts.Timeline:
		origin.Status, origin.Reason = StatusUnused, unusedReason
	case slices.Contains(opts.Skip, "origin"):
		origin.Status, origin.Reason = StatusSkipped, "--skip-point; without it: "+originWhy
	default:
		origin.Status, origin.Reason = t.attachOrigin()
	}
	t.Plan = append(t.Plan, origin)
}

// noBTFCause is why fentry was not tried where BTF does not describe a
// function: conntrack is a module in distribution kernels, and a module's
// BTF needs CONFIG_DEBUG_INFO_BTF_MODULES (5.11+; Debian 11's 5.10 has none).
const noBTFCause = "fentry: no BTF for the probed functions (a module's needs CONFIG_DEBUG_INFO_BTF_MODULES, 5.11+)"

// originWhy is what is lost without the origin point.
const originWhy = "forwarded packets (pod to node) carry no process or socket"

// useWinnerLookup turns on the in-kernel index of confirmed cts by tuple
// when no clash probe is attached (on 4.19-5.5 nf_ct_resolve_clash is likely
// inlined), so that a loser's winner is still found and named.
func (t *Tracer) useWinnerLookup() error {
	if t.attached("clash") {
		return nil
	}
	if err := t.maps.Variables[probe.BPFVarLookupWinner].Set(true); err != nil {
		return fmt.Errorf("turn on winner lookup: %w", err)
	}
	return nil
}

// attached says whether the plan so far attached the point.
func (t *Tracer) attached(point string) bool {
	return slices.ContainsFunc(t.Plan, func(e PlanEntry) bool { return e.Point == point && e.Status == StatusAttached })
}

// SkippablePoints are the probe points --skip-point accepts.
var SkippablePoints = []string{"nat", "clash", "origin"}

// Fentry says whether BPF trampolines work here, as attaching found out:
// "yes", or why not.
func (t *Tracer) Fentry() string {
	for _, e := range t.Plan {
		if e.Mode == ModeFentry && e.Status == StatusAttached {
			return "yes"
		}
	}
	for _, c := range t.causes {
		if after, ok := strings.CutPrefix(c, "fentry: "); ok {
			return "no: " + after
		}
	}
	if !t.Kernel.BTF {
		return "no: the kernel has no BTF"
	}
	return "not tried"
}

func (t *Tracer) cause(c string) {
	for _, have := range t.causes {
		if have == c {
			return
		}
	}
	t.causes = append(t.causes, c)
}

// attachOrigin records each skb's sending task and socket as it leaves a
// device, so that conntrack in the next netns (a node's PREROUTING, where
// the socket is gone) can name the pod process behind it.
func (t *Tracer) attachOrigin() (status, reason string) {
	prog, err := t.loadProgram(probe.BPFProgRawTpOrigin, "")
	if err == nil {
		var l link.Link
		l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: "net_dev_queue", Program: prog})
		if err == nil {
			t.links = append(t.links, attached{Link: l, fn: "net_dev_queue"})
			return StatusAttached, ""
		}
	}
	return StatusFailed, fmt.Sprintf("%v; without it: %s", err, originWhy)
}

func (t *Tracer) loadProgram(name, attachTo string) (*ebpf.Program, error) {
	ps := t.spec.Programs[name].Copy()
	if attachTo != "" && ps.Type == ebpf.Tracing {
		ps.AttachTo = attachTo
	}
	s := t.spec.Copy()
	s.Programs = map[string]*ebpf.ProgramSpec{name: ps}
	coll, err := ebpf.NewCollectionWithOptions(s, ebpf.CollectionOptions{MapReplacements: t.maps.Maps})
	if err != nil {
		return nil, shortError(err)
	}
	prog := coll.DetachProgram(name)
	coll.Close()
	t.progs = append(t.progs, loaded{prog, name})
	return prog, nil
}

func (t *Tracer) attachFentry(c candidate) error {
	var ls []attached
	for _, name := range []string{c.fentry.entry, c.fentry.exit} {
		if name == "" {
			continue
		}
		prog, err := t.loadProgram(name, c.fn)
		if err == nil {
			var l link.Link
			l, err = link.AttachTracing(link.TracingOptions{Program: prog})
			if err == nil {
				ls = append(ls, attached{Link: l, fn: c.fn})
				continue
			}
		}
		closeLinks(ls)
		return err
	}
	t.links = append(t.links, ls...)
	return nil
}

// attachKprobe attaches the candidate's kprobe.session program where it
// has one and the kernel allows it, else its entry and return probes.
// maxActive (0: DefaultMaxActive) is the kretprobes' instances: races are
// concurrent, so a kretprobe needs more than the default (2 x CPUs), which
// the kernel accepts only through tracefs. A kprobe.session cannot be
// given instances, so maxActive given explicitly keeps the kretprobe.
func (t *Tracer) attachKprobe(c candidate, sym string, maxActive int) (Mode, []string, error) {
	var notes []string
	if c.session != "" {
		err := t.attachSession(c.session, sym, maxActive)
		if err == nil {
			return ModeKprobeSession, nil, nil
		}
		notes = append(notes, fmt.Sprintf("kprobe.session: %v", err))
	}
	var ls []attached
	if c.kprobe.entry != "" {
		prog, err := t.loadProgram(c.kprobe.entry, "")
		if err != nil {
			return "", nil, err
		}
		l, err := link.Kprobe(sym, prog, nil)
		if err != nil {
			return "", nil, shortError(err)
		}
		ls = append(ls, attached{Link: l, fn: sym})
	}
	if c.kprobe.exit != "" {
		prog, err := t.loadProgram(c.kprobe.exit, "")
		if err != nil {
			closeLinks(ls)
			return "", nil, err
		}
		ensureTracefs()
		l, err := link.Kretprobe(sym, prog, &link.KprobeOptions{RetprobeMaxActive: orDefault(maxActive, DefaultMaxActive)})
		if err != nil {
			l, err = link.Kretprobe(sym, prog, nil)
			notes = append(notes, "kretprobe maxactive unavailable (no tracefs): kernel default instances")
		}
		if err != nil {
			closeLinks(ls)
			return "", nil, shortError(err)
		}
		ls = append(ls, attached{Link: l, fn: sym, retprobe: true})
	}
	t.links = append(t.links, ls...)
	if c.kprobeNote != "" {
		notes = append(notes, c.kprobeNote)
	}
	return ModeKprobe, notes, nil
}

// attachSession attaches a kprobe.session program to sym; the error says
// why the kretprobe is used instead.
func (t *Tracer) attachSession(name, sym string, maxActive int) error {
	if maxActive != 0 {
		return errors.New("not used: --max-active sets kretprobe instances")
	}
	if err := features.HaveBPFLinkKprobeSession(); errors.Is(err, ebpf.ErrNotSupported) {
		return errors.New("not in this kernel (6.10+ with CONFIG_FPROBE)")
	} else if err != nil {
		return fmt.Errorf("probe for it: %w", shortError(err))
	}
	prog, err := t.loadProgram(name, "")
	if err != nil {
		return err
	}
	l, err := link.KprobeMulti(prog, link.KprobeMultiOptions{Symbols: []string{sym}, Session: true})
	if err != nil {
		return shortError(err)
	}
	t.links = append(t.links, attached{Link: l, fn: sym, retprobe: true})
	return nil
}

// ensureTracefs mounts tracefs where the kernel expects it when nothing is
// mounted there yet (kretprobes with maxactive are created through it).
func ensureTracefs() {
	if _, err := os.Stat("/sys/kernel/tracing/kprobe_events"); err == nil {
		return
	}
	if _, err := os.Stat("/sys/kernel/debug/tracing/kprobe_events"); err == nil {
		return
	}
	_ = unix.Mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, "")
}

// closeLinks detaches in the reverse order of attaching: each point's exit
// program before its entry program, and a point that reads what an earlier
// one saved (confirm's exit reads clash's pair, ct_in's history) before
// that one. An exit program that outlived its entry program ran for calls
// that entered after the entry detached, found no saved entry and counted
// LOSS_NO_ENTRY: a tracer stopped while new flows passed lost dozens to
// hundreds of records that way (VM lab, 5.10 kprobes and 6.1 fentry alike;
// issue 14, docs/kernel-notes.md "Attaching and detaching"). Detached this
// way, an exit runs only for a call whose entry ran; a call caught between
// the two leaves its entry behind, which nothing reads.
func closeLinks(ls []attached) {
	for i := len(ls) - 1; i >= 0; i-- {
		ls[i].Close()
	}
}

// shortError keeps of a verifier error its cause and the log's last line,
// which says what the verifier refused (the whole log is for a bug report),
// and replaces the library's memlock hint, wrong on 5.11+ where memory is
// accounted per cgroup, with what EPERM means for tracing programs.
func shortError(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		if why := verifierVerdict(ve.Log); why != "" {
			return fmt.Errorf("verifier rejected the program: %v: %s", ve.Cause, why)
		}
		return fmt.Errorf("verifier rejected the program: %v", ve.Cause)
	}
	if errors.Is(err, unix.EPERM) {
		return errors.New("the kernel refused to load it (operation not permitted: fentry disabled or lockdown)")
	}
	return err
}

// verifierVerdict is the last line of a verifier log that is not its
// closing statistics ("processed N insns ...", "verification time ...").
func verifierVerdict(log []string) string {
	for i := len(log) - 1; i >= 0; i-- {
		line := strings.TrimSpace(log[i])
		if line == "" || strings.HasPrefix(line, "processed ") || strings.HasPrefix(line, "verification time") ||
			strings.HasPrefix(line, "stack depth") {
			continue
		}
		return line
	}
	return ""
}

// requiredAttached fails, with the fix, when a required point is missing.
func (t *Tracer) requiredAttached() error {
	var missing []string
	for _, e := range t.Plan {
		if e.Required && e.Status != StatusAttached {
			missing = append(missing, e.Function)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s cannot attach (%s): run it on a kernel with CONFIG_KPROBES=y or BPF trampolines (fentry, 5.5+ with BTF), as distribution kernels are; `ctprobe probes` shows each probe point",
		ErrNotTraceable, strings.Join(missing, " and "), strings.Join(t.causes, "; "))
}

// Read blocks for the next ring buffer record, reusing rec's buffer.
// It returns os.ErrDeadlineExceeded after a deadline and ringbuf.ErrClosed
// after Close.
func (t *Tracer) Read(rec *ringbuf.Record) error { return t.reader.ReadInto(rec) }

// Buffered is the number of bytes the ring buffer holds, not yet read.
func (t *Tracer) Buffered() int { return t.reader.AvailableBytes() }

// SetDeadline makes a blocked Read return at d (zero: no deadline).
func (t *Tracer) SetDeadline(d time.Time) { t.reader.SetDeadline(d) }

// Loss is a count of records that did not reach user space, by source.
type Loss struct {
	// "ringbuf", "no-entry", "no-history", or "kretprobe-missed:FUNCTION"
	// and "recursion-missed:PROGRAM", summed over CPUs by the kernel.
	Source string
	CPU    int // -1 when not per CPU
	Count  uint64
}

var lossSources = [...]string{
	probe.BPFLossKindLOSS_RINGBUF:    "ringbuf",
	probe.BPFLossKindLOSS_NO_ENTRY:   "no-entry",
	probe.BPFLossKindLOSS_NO_HISTORY: "no-history",
}

// Losses returns the cumulative counts since Open: per CPU for the BPF
// side's counters; kretprobe misses (maxactive exhausted) per function
// where the kernel reports them; and per program the runs the kernel
// skipped because a BPF program was already running on the CPU (a kprobe
// program in any softirq that interrupted one, 6.7+; a tracing program
// inside itself, 5.12+).
func (t *Tracer) Losses() ([]Loss, error) {
	var out []Loss
	for kind, source := range lossSources {
		var perCPU []uint64
		if err := t.lossMap.Lookup(uint32(kind), &perCPU); err != nil {
			return nil, fmt.Errorf("read loss counters: %w", err)
		}
		for cpu, n := range perCPU {
			if n > 0 {
				out = append(out, Loss{Source: source, CPU: cpu, Count: n})
			}
		}
	}
	t.readKretMissed()
	for fn, n := range t.kretMissed {
		if n > 0 {
			out = append(out, Loss{Source: "kretprobe-missed:" + fn, CPU: -1, Count: n})
		}
	}
	for _, p := range t.progs {
		// Before 5.12 the kernel has no such count: the field reads 0.
		if st, err := p.Stats(); err == nil && st.RecursionMisses > 0 {
			out = append(out, Loss{Source: "recursion-missed:" + p.name, CPU: -1, Count: st.RecursionMisses})
		}
	}
	return out, nil
}

func (t *Tracer) readKretMissed() {
	for _, l := range t.links {
		if !l.retprobe {
			continue
		}
		if n, ok := kretprobeMissed(l); ok {
			if t.kretMissed == nil {
				t.kretMissed = map[string]uint64{}
			}
			t.kretMissed[l.fn] = n
		}
	}
}

// Sent is the number of records the BPF programs offered to the ring
// buffer since Open: those read plus those lost to a full buffer.
func (t *Tracer) Sent() (uint64, error) { return t.counter(probe.BPFLossKindLOSS_SENT, "sent") }

// Nested is the number of entries saved since Open above another of their
// key, and paired all the same: a softirq's call inside a task's call,
// which kprobe mode keys alike (bpf/ctprobe.bpf.c, struct saved_entries).
func (t *Tracer) Nested() (uint64, error) { return t.counter(probe.BPFLossKindLOSS_NESTED, "nested") }

// counter sums one of the BPF side's per-CPU counters.
func (t *Tracer) counter(kind probe.BPFLossKind, name string) (uint64, error) {
	var perCPU []uint64
	if err := t.lossMap.Lookup(uint32(kind), &perCPU); err != nil {
		return 0, fmt.Errorf("read %s counter: %w", name, err)
	}
	var n uint64
	for _, v := range perCPU {
		n += v
	}
	return n, nil
}

// kretprobeMissed reads the link's miss count: from bpf_link_info on 6.7+,
// else from tracefs kprobe_profile, where a kretprobe created with maxactive
// is listed under its symbol's name (another tool's probe on the same symbol
// would be summed in).
func kretprobeMissed(l attached) (uint64, bool) {
	if info, err := l.Info(); err == nil {
		if pe := info.PerfEvent(); pe != nil {
			if kp := pe.Kprobe(); kp != nil {
				return kp.Missed, true
			}
		}
		// A kprobe.session's fprobe counts the calls it missed.
		if km := info.KprobeMulti(); km != nil {
			return km.Missed, true
		}
	}
	for _, p := range []string{"/sys/kernel/tracing/kprobe_profile", "/sys/kernel/debug/tracing/kprobe_profile"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		return kprobeProfileMissed(string(b), l.fn)
	}
	return 0, false
}

// kprobeProfileMissed sums the "nmissed" column of kprobe_profile lines
// ("<event> <nhit> <nmissed>") whose event is named after fn.
func kprobeProfileMissed(profile, fn string) (uint64, bool) {
	var total uint64
	found := false
	event := tracefsEventName(fn)
	for _, line := range strings.Split(profile, "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != event {
			continue
		}
		n, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			continue
		}
		total += n
		found = true
	}
	return total, found
}

// tracefsEventName is the event name cilium/ebpf gives a tracefs kprobe on
// symbol fn (internal/tracefs sanitizeIdentifier): every run of characters
// other than ASCII letters and digits becomes one underscore, so
// __nf_conntrack_confirm is listed as _nf_conntrack_confirm.
func tracefsEventName(fn string) string {
	var b strings.Builder
	run := false
	for _, c := range fn {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b.WriteRune(c)
			run = false
		} else if !run {
			b.WriteByte('_')
			run = true
		}
	}
	return b.String()
}

// Detach removes every probe; records already in the ring buffer can still
// be read. Call it before draining, so that the drain ends.
func (t *Tracer) Detach() {
	t.readKretMissed()
	closeLinks(t.links)
	t.links = nil
}

// Close detaches every probe and frees the maps. Records still in the ring
// buffer should be drained with Read before Close.
func (t *Tracer) Close() error {
	closeLinks(t.links)
	t.links = nil
	if t.reader != nil {
		t.reader.Close()
	}
	for _, p := range t.progs {
		p.Close()
	}
	t.progs = nil
	if t.maps != nil {
		t.maps.Close()
	}
	return nil
}
