package tracer

import (
	"github.com/ctprobe/ctprobe/tracer/probe"
)

// Mode is how a probe point is attached.
type Mode string

const (
	ModeFentry Mode = "fentry" // fentry/fexit: BPF trampolines, 5.5+ with BTF
	ModeKprobe Mode = "kprobe" // kprobe/kretprobe: any kernel with CONFIG_KPROBES
	ModeRawTP  Mode = "raw_tracepoint"
)

// Status of one probe point after planning or attaching.
const (
	StatusAttached = "attached"
	StatusFailed   = "failed"  // could not attach in any mode
	StatusAbsent   = "absent"  // the kernel has no such function (inlined or not loaded)
	StatusPlanned  = "planned" // not attempted (e.g. `ctprobe probes` without privileges)
	StatusSkipped  = "skipped" // --skip-point
)

// PlanEntry is the decision for one probe point.
type PlanEntry struct {
	Point    string `json:"point"`
	Function string `json:"function"`
	Mode     Mode   `json:"mode,omitempty"`
	Status   string `json:"status"`
	Reason   string `json:"reason,omitempty"`
	Required bool   `json:"required"`
}

// programs names the entry and exit programs of one attach mode ("" for none).
type programs struct{ entry, exit string }

// candidate is one kernel function that can serve a probe point.
type candidate struct {
	fn     string
	fentry programs // zero when fentry cannot be used for this variant
	kprobe programs
}

// point is one stage of the conntrack insertion path.
type point struct {
	name     string
	required bool
	why      string // what is lost without it
	// candidates in order of preference, chosen for this kernel's signatures.
	candidates func(k Kernel) []candidate
}

// points are the stages ctprobe follows, in the order a packet meets them.
var points = []point{
	{
		name: "ct_in", required: true, why: "no conntrack entry is seen being created",
		candidates: func(k Kernel) []candidate {
			// 4.19 has nf_conntrack_in(net, pf, hooknum, skb); 4.20+ (skb, state).
			if n := k.funcParams("nf_conntrack_in"); n == 4 || (n < 0 && !k.AtLeast(4, 20)) {
				return []candidate{{fn: "nf_conntrack_in",
					kprobe: programs{probe.BPFProgKprobeCtInV419, probe.BPFProgKretprobeCtIn}}}
			}
			return []candidate{{fn: "nf_conntrack_in",
				fentry: programs{"", probe.BPFProgFexitCtIn},
				kprobe: programs{probe.BPFProgKprobeCtIn, probe.BPFProgKretprobeCtIn}}}
		},
	},
	{
		name: "nat", why: "NAT bindings (chosen endpoint, changed source port) are not seen; race 2 cannot be told apart",
		candidates: func(Kernel) []candidate {
			// get_unique_tuple is static and inlined into nf_nat_setup_info in
			// most builds (6.1, 6.18); nf_nat_setup_info is exported.
			return []candidate{
				{fn: "get_unique_tuple",
					fentry: programs{probe.BPFProgFentryGut, probe.BPFProgFexitGut},
					kprobe: programs{probe.BPFProgKprobeGut, probe.BPFProgKretprobeGut}},
				{fn: "nf_nat_setup_info",
					fentry: programs{probe.BPFProgFentryNat, probe.BPFProgFexitNat},
					kprobe: programs{probe.BPFProgKprobeNat, probe.BPFProgKretprobeNat}},
			}
		},
	},
	{
		name: "clash", why: "the winner of a clash is known only when the loser was merged into it",
		candidates: func(k Kernel) []candidate {
			// 4.19-5.5: nf_ct_resolve_clash(net, skb, ctinfo, h), likely inlined;
			// 5.6+: (skb, h, reply_hash), __cold noinline. __nf_ct_resolve_clash(skb, h)
			// (5.6+) shares the first two arguments.
			if n := k.funcParams("nf_ct_resolve_clash"); n == 4 || (n < 0 && !k.AtLeast(5, 6)) {
				return []candidate{{fn: "nf_ct_resolve_clash",
					kprobe: programs{probe.BPFProgKprobeClashV419, ""}}}
			}
			return []candidate{
				{fn: "nf_ct_resolve_clash",
					fentry: programs{probe.BPFProgFentryClash, ""},
					kprobe: programs{probe.BPFProgKprobeClash, ""}},
				{fn: "__nf_ct_resolve_clash",
					fentry: programs{probe.BPFProgFentryClash, ""},
					kprobe: programs{probe.BPFProgKprobeClash, ""}},
			}
		},
	},
	{
		name: "confirm", required: true, why: "no verdict: clashes and drops are invisible",
		candidates: func(Kernel) []candidate {
			return []candidate{{fn: "__nf_conntrack_confirm",
				fentry: programs{probe.BPFProgFentryConfirm, probe.BPFProgFexitConfirm},
				kprobe: programs{probe.BPFProgKprobeConfirm, probe.BPFProgKretprobeConfirm}}}
		},
	},
}
