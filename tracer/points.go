package tracer

import (
	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/mode"
	"github.com/ctprobe/ctprobe/tracer/plan"
	"github.com/ctprobe/ctprobe/tracer/probe"
)

// programs names the entry and exit programs of one attach mode ("" for none).
type programs struct{ entry, exit string }

// candidate is one kernel function (or tracepoint) that can serve a probe
// point, with its programs for each way of attaching.
type candidate struct {
	fn     string
	fentry programs // zero when fentry cannot be used for this variant
	kprobe programs
	// session, if any, is a kprobe.session program doing what kprobe's
	// entry and exit programs do, without their entries map; kprobe mode
	// tries it first.
	session string
	// kprobeNote goes into the plan's reason when the kprobe pair attaches.
	kprobeNote string
	// tracepoint is a raw tracepoint program; fn is then "system:event".
	tracepoint string
	// tpBTF is the same tracepoint's BTF-enabled program (tp_btf), tried
	// first except with --attach kprobe.
	tpBTF string
}

// point is one stage of the conntrack insertion path.
type point struct {
	name string
	why  string // what is lost without it
	// event is the kind of record the point produces (0: none of its own).
	event event.Kind
	// skippable: the user may leave the point out (--skip-point).
	skippable bool
	// functions are every function any of its candidates may name, looked
	// up in kallsyms and BTF at start.
	functions []string
	// use says whether the mode needs the point, and whether tracing must
	// fail without it; attached tells which earlier points attached.
	use func(m mode.Mode, attached func(point string) bool) (needed, required bool)
	// candidates in order of preference, chosen for this kernel's
	// signatures, for the mode (the default mode probes
	// nf_ct_resolve_clash's exit too) and for the points attached before.
	candidates func(k Kernel, m mode.Mode, attached func(point string) bool) []candidate
}

// followsFlows is the use of the points that only --timeline (with or
// without --all) needs, to follow every new ct: the default mode and --all
// probe only the clash path, and --all confirm's exit.
func followsFlows(required bool) func(mode.Mode, func(string) bool) (bool, bool) {
	return func(m mode.Mode, _ func(string) bool) (bool, bool) {
		return m.FollowsFlows(), required && m.FollowsFlows()
	}
}

// unusedReason is the plan's reason for a point the mode does not need.
const unusedReason = "the default mode and --all probe only the clash path and confirm; --timeline attaches it"

// points are the stages ctprobe follows, in the order a packet meets them
// (clash before confirm: the default mode needs confirm only without it),
// and the tracepoint that names a forwarded packet's sender. This list is
// the one place that says what ctprobe probes: the functions read from
// kallsyms, the points --skip-point accepts and the events decoded all
// come from it.
var points = []point{
	{
		name: "ct_in", why: "no conntrack entry is seen being created", event: event.CTIn,
		functions: []string{"nf_conntrack_in"},
		use:       followsFlows(true),
		candidates: func(k Kernel, _ mode.Mode, _ func(string) bool) []candidate {
			sig := k.ctInSignature()
			if sig.older {
				return []candidate{{fn: "nf_conntrack_in", kprobeNote: sig.from,
					kprobe: programs{probe.BPFProgKprobeCtInV419, probe.BPFProgKretprobeCtIn}}}
			}
			return []candidate{{fn: "nf_conntrack_in", kprobeNote: sig.from,
				fentry: programs{"", probe.BPFProgFexitCtIn},
				kprobe: programs{probe.BPFProgKprobeCtIn, probe.BPFProgKretprobeCtIn}}}
		},
	},
	{
		name: "nat", why: "NAT bindings (chosen endpoint, changed source port) are not seen; race 2 cannot be told apart",
		event: event.NAT, skippable: true,
		functions: []string{"get_unique_tuple", "nf_nat_setup_info"},
		use:       followsFlows(false),
		candidates: func(_ Kernel, m mode.Mode, _ func(string) bool) []candidate {
			// get_unique_tuple is static and inlined into nf_nat_setup_info in
			// most builds (6.1, 6.18); nf_nat_setup_info is exported.
			gut := programs{probe.BPFProgFentryGut, probe.BPFProgFexitGut}
			nat := programs{probe.BPFProgFentryNat, probe.BPFProgFexitNat}
			if m.KeepHistory() {
				// fexit alone: the ct's history holds what the entry would
				// save (bpf/point_nat.bpf.h, nat_exit_hist).
				gut, nat = programs{"", probe.BPFProgFexitGutHist}, programs{"", probe.BPFProgFexitNatHist}
			}
			return []candidate{
				{fn: "get_unique_tuple", fentry: gut,
					kprobe: programs{probe.BPFProgKprobeGut, probe.BPFProgKretprobeGut}},
				{fn: "nf_nat_setup_info", fentry: nat,
					kprobe: programs{probe.BPFProgKprobeNat, probe.BPFProgKretprobeNat}},
			}
		},
	},
	{
		name: "clash", why: "the winner of a clash is known only when the loser was merged into it or by a tuple lookup at confirm",
		event: event.Clash, skippable: true,
		functions: []string{"nf_ct_resolve_clash", "__nf_ct_resolve_clash"},
		use:       func(mode.Mode, func(string) bool) (bool, bool) { return true, false },
		candidates: func(k Kernel, m mode.Mode, _ func(string) bool) []candidate {
			// Its return value is confirm's verdict, which the default mode
			// reads at its exit instead of probing confirm; the other modes
			// read it at confirm's exit.
			atConfirm := m != mode.Default
			fexit, kret := probe.BPFProgFexitClash, probe.BPFProgKretprobeClash
			if atConfirm {
				fexit, kret = "", ""
			}
			// __nf_ct_resolve_clash(skb, h) (5.6+) shares the first two
			// arguments of the newer nf_ct_resolve_clash, but not the verdict.
			sig := k.clashSignature()
			if sig.older {
				return []candidate{{fn: "nf_ct_resolve_clash", kprobeNote: sig.from,
					kprobe: programs{probe.BPFProgKprobeClashV419, kret}}}
			}
			cs := []candidate{{fn: "nf_ct_resolve_clash", kprobeNote: sig.from,
				fentry: programs{probe.BPFProgFentryClash, fexit},
				kprobe: programs{probe.BPFProgKprobeClash, kret}}}
			if atConfirm {
				cs = append(cs, candidate{fn: "__nf_ct_resolve_clash",
					fentry: programs{probe.BPFProgFentryClash, ""},
					kprobe: programs{probe.BPFProgKprobeClash, ""}})
			}
			return cs
		},
	},
	{
		name: "confirm", why: "no verdict: clashes and drops are invisible", event: event.Confirm,
		functions: []string{"__nf_conntrack_confirm"},
		use: func(m mode.Mode, attached func(string) bool) (bool, bool) {
			need := m != mode.Default || !attached("clash")
			return need, need
		},
		candidates: func(k Kernel, m mode.Mode, attached func(string) bool) []candidate {
			// --all with the clash probe needs only the exit: a new ct that
			// did not clash is still there to be read, and one that clashed
			// was read at nf_ct_resolve_clash. Without the clash probe the
			// entry indexes each ct by tuple, to find a loser's winner.
			if m.StreamConfirms() && attached("clash") {
				// The kprobe pair's entry keeps the skb for the kretprobe,
				// which sees no arguments: in the task's own storage where
				// tracing programs have it, else in the entries map.
				pair := programs{probe.BPFProgKprobeConfirm, probe.BPFProgKretprobeConfirmNew}
				note := "the kretprobe's skb waits in a hash map (task storage needs 5.13+)"
				if k.TaskStorage {
					pair = programs{probe.BPFProgKprobeConfirmTask, probe.BPFProgKretprobeConfirmNewTask}
					note = "the kretprobe's skb waits in task storage"
				}
				return []candidate{{fn: "__nf_conntrack_confirm",
					fentry:     programs{"", probe.BPFProgFexitConfirmNew},
					kprobe:     pair,
					session:    probe.BPFProgKsessionConfirmNew,
					kprobeNote: note}}
			}
			fentry := programs{probe.BPFProgFentryConfirm, probe.BPFProgFexitConfirm}
			if m.KeepHistory() && attached("clash") {
				// fexit alone: the clash record holds a merged loser's
				// tuples (bpf/point_confirm.bpf.h, confirm_exit_hist).
				fentry = programs{"", probe.BPFProgFexitConfirmHist}
			}
			return []candidate{{fn: "__nf_conntrack_confirm", fentry: fentry,
				kprobe: programs{probe.BPFProgKprobeConfirm, probe.BPFProgKretprobeConfirm}}}
		},
	},
	{
		// net:net_dev_queue, every version: an skb leaving a device, in the
		// sender's context for local sockets; joined at the next netns's
		// PREROUTING, where the socket is gone.
		name: "origin", why: "forwarded packets (pod to node) carry no process or socket", skippable: true,
		use: followsFlows(false),
		candidates: func(Kernel, mode.Mode, func(string) bool) []candidate {
			return []candidate{{fn: "net:net_dev_queue", tpBTF: probe.BPFProgTpBtfOrigin, tracepoint: probe.BPFProgRawTpOrigin}}
		},
	},
}

// probedFunctions are the kernel functions any plan may use.
var probedFunctions = func() []string {
	var fns []string
	for _, p := range points {
		fns = append(fns, p.functions...)
	}
	return fns
}()

// SkippablePoints are the probe points that may be left out.
var SkippablePoints = func() []string {
	var names []string
	for _, p := range points {
		if p.skippable {
			names = append(names, p.name)
		}
	}
	return names
}()

// planEntry starts a point's plan entry.
func (p *point) planEntry(required bool) plan.Entry {
	return plan.Entry{Point: p.name, Required: required, Status: plan.Absent}
}
