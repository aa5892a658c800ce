// Package plan is the attach plan's vocabulary: one entry per probe point,
// saying which kernel function serves it, how it was attached and why. The
// tracer makes the plan, renderers print it and capture files keep it, all
// with this one type.
package plan

// Attach is how a probe point is attached to its kernel function.
type Attach string

const (
	Fentry Attach = "fentry" // fentry/fexit: BPF trampolines, 5.5+ with BTF of the function
	Kprobe Attach = "kprobe" // kprobe/kretprobe: any kernel with CONFIG_KPROBES
	// KprobeSession is kprobe mode's one program for entry and return
	// (fprobe, 6.10+), where a point has one and no kretprobe instances
	// were asked for.
	KprobeSession Attach = "kprobe.session"
	RawTracepoint Attach = "raw_tracepoint"
	// TpBTF is a raw tracepoint with BTF-typed arguments (5.5+), whose
	// program reads the kernel's objects with plain loads.
	TpBTF Attach = "tp_btf"
)

// Status is what became of a probe point.
type Status string

const (
	Attached Status = "attached"
	Failed   Status = "failed"  // could not attach in any way
	Absent   Status = "absent"  // the kernel has no such function (inlined or not loaded)
	Skipped  Status = "skipped" // the user asked to leave it out
	Unused   Status = "unused"  // the trace mode does not need it
)

// Entry is the decision for one probe point. Capture files store it as
// JSON with these field names (Attach under "Mode", the name it had when
// the format was defined), so the names are part of the format.
type Entry struct {
	Point    string // ct_in, nat, clash, confirm, origin
	Function string // kernel function or tracepoint
	Attach   Attach `json:"Mode"`
	Status   Status
	Reason   string // why, when not attached or attached with a caveat
	// Required: tracing fails without this point.
	Required bool `json:",omitempty"`
}

// IsAttached reports whether the plan attached probe point point.
func IsAttached(entries []Entry, point string) bool {
	for _, e := range entries {
		if e.Point == point && e.Status == Attached {
			return true
		}
	}
	return false
}
