package tracer

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/ctprobe/ctprobe/tracer/plan"
	"github.com/ctprobe/ctprobe/tracer/probe"
)

// attach walks the points: for each, the first present candidate, fentry
// first where BTF describes the function, kprobe otherwise or on failure,
// or its raw tracepoint.
func (t *Tracer) attach(opts Options) {
	for i := range points {
		p := &points[i]
		needed, required := p.use(opts.Mode, t.attached)
		candidates := p.candidates(t.Kernel, opts.Mode, t.attached)
		e := p.planEntry(required)
		if !needed {
			e.Function, e.Status, e.Reason = candidates[0].fn, plan.Unused, unusedReason
			t.Plan = append(t.Plan, e)
			continue
		}
		if slices.Contains(opts.Skip, p.name) {
			e.Function, e.Status, e.Reason = candidates[0].fn, plan.Skipped, "--skip-point; without it: "+p.why
			t.Plan = append(t.Plan, e)
			continue
		}
		var reasons []string
		for _, c := range candidates {
			if c.tracepoint != "" {
				e.Function = c.fn
				if c.tpBTF != "" && opts.Attach != plan.Kprobe {
					err := t.attachTpBTF(c)
					if err == nil {
						e.Attach, e.Status = plan.TpBTF, plan.Attached
						break
					}
					reasons = append(reasons, fmt.Sprintf("%s %s: %v", c.fn, plan.TpBTF, err))
				}
				if err := t.attachTracepoint(c); err != nil {
					e.Status = plan.Failed
					reasons = append(reasons, fmt.Sprintf("%s %s: %v", c.fn, plan.RawTracepoint, err))
					continue
				}
				e.Attach, e.Status = plan.RawTracepoint, plan.Attached
				break
			}
			sym, ok := t.Kernel.Symbols[c.fn]
			if !ok {
				reasons = append(reasons, c.fn+": not in kallsyms (inlined or module not loaded)")
				continue
			}
			e.Function = c.fn
			if !sym.Exact(c.fn) {
				// A .isra/.constprop clone may have dropped or reordered its
				// arguments: its registers cannot be read as the original's.
				e.Status = plan.Failed
				reasons = append(reasons, fmt.Sprintf("%s: only the compiler clone %s is in kallsyms, whose arguments may differ, so it is not probed", c.fn, sym.Names[0]))
				continue
			}
			e.Status = plan.Failed
			if opts.Attach == plan.Kprobe {
				reasons = append(reasons, c.fn+" fentry: not tried (--attach kprobe)")
			} else if c.fentry.exit != "" || c.fentry.entry != "" {
				if !t.Kernel.hasBTFFunc(c.fn) {
					reasons = append(reasons, c.fn+" fentry: no BTF for the function")
					t.cause(noBTFCause)
				} else if err := t.attachFentry(c); err != nil {
					reasons = append(reasons, fmt.Sprintf("%s fentry: %v", c.fn, err))
					t.cause(fmt.Sprintf("fentry: %v", err))
				} else {
					e.Attach, e.Status = plan.Fentry, plan.Attached
					break
				}
			}
			if opts.Attach == plan.Fentry {
				reasons = append(reasons, c.fn+" kprobe: not tried (--attach fentry)")
				continue
			}
			if !t.Kernel.Kprobes {
				reasons = append(reasons, c.fn+" kprobe: kernel has no kprobes (CONFIG_KPROBES off)")
				t.cause("kprobe: kernel has no kprobes (CONFIG_KPROBES off)")
				continue
			}
			how, note, err := t.attachKprobe(c, c.fn, opts.MaxActive)
			if err != nil {
				reasons = append(reasons, fmt.Sprintf("%s kprobe: %v", c.fn, err))
				t.cause(fmt.Sprintf("kprobe: %v", err))
				continue
			}
			e.Attach, e.Status = how, plan.Attached
			reasons = append(reasons, note...)
			break
		}
		if e.Status != plan.Attached && e.Function == "" {
			e.Function = candidates[0].fn
		}
		if e.Status != plan.Attached {
			reasons = append(reasons, "without it: "+p.why)
		}
		e.Reason = strings.Join(reasons, "; ")
		t.Plan = append(t.Plan, e)
	}
}

// noBTFCause is why fentry was not tried where BTF does not describe a
// function: conntrack is a module in distribution kernels, and a module's
// BTF needs CONFIG_DEBUG_INFO_BTF_MODULES (5.11+; Debian 11's 5.10 has none).
const noBTFCause = "fentry: no BTF for the probed functions (a module's needs CONFIG_DEBUG_INFO_BTF_MODULES, 5.11+)"

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
	return slices.ContainsFunc(t.Plan, func(e plan.Entry) bool { return e.Point == point && e.Status == plan.Attached })
}

// Fentry says whether BPF trampolines work here, as attaching found out:
// "yes", or why not.
func (t *Tracer) Fentry() string {
	for _, e := range t.Plan {
		if e.Attach == plan.Fentry && e.Status == plan.Attached {
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
func (t *Tracer) attachKprobe(c candidate, sym string, maxActive int) (plan.Attach, []string, error) {
	var notes []string
	if c.session != "" {
		err := t.attachSession(c.session, sym, maxActive)
		if err == nil {
			return plan.KprobeSession, nil, nil
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
	return plan.Kprobe, notes, nil
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

// attachTracepoint attaches a candidate's raw tracepoint program to its
// "system:event" (the raw tracepoint is named by the event alone).
func (t *Tracer) attachTracepoint(c candidate) error {
	prog, err := t.loadProgram(c.tracepoint, "")
	if err != nil {
		return err
	}
	_, name, _ := strings.Cut(c.fn, ":")
	l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: name, Program: prog})
	if err != nil {
		return err
	}
	t.links = append(t.links, attached{Link: l, fn: name})
	return nil
}

// attachTpBTF attaches a candidate's tp_btf program to its "system:event"
// (the kernel finds it as btf_trace_<event> in its BTF).
func (t *Tracer) attachTpBTF(c candidate) error {
	_, name, _ := strings.Cut(c.fn, ":")
	prog, err := t.loadProgram(c.tpBTF, name)
	if err != nil {
		return err
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: prog})
	if err != nil {
		return err
	}
	t.links = append(t.links, attached{Link: l, fn: name})
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
		if e.Required && e.Status != plan.Attached {
			missing = append(missing, e.Function)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s cannot attach (%s): run it on a kernel with CONFIG_KPROBES=y or BPF trampolines (fentry, 5.5+ with BTF), as distribution kernels are; `ctprobe probes` shows each probe point",
		ErrNotTraceable, strings.Join(missing, " and "), strings.Join(t.causes, "; "))
}
