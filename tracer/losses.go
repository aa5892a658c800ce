package tracer

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/ctprobe/ctprobe/tracer/loss"
	"github.com/ctprobe/ctprobe/tracer/probe"
)

// Losses returns the cumulative counts since Open: per CPU for the BPF
// side's counters; kretprobe misses (maxactive exhausted) per function
// where the kernel reports them; and per program the runs the kernel
// skipped because a BPF program was already running on the CPU (a kprobe
// program in any softirq that interrupted one, 6.7+; a tracing program
// inside itself, 5.12+).
func (t *Tracer) Losses() ([]loss.Count, error) {
	var out []loss.Count
	for _, index := range slices.Sorted(maps.Keys(loss.FromBPF)) {
		var perCPU []uint64
		if err := t.lossMap.Lookup(index, &perCPU); err != nil {
			return nil, fmt.Errorf("read loss counters: %w", err)
		}
		for cpu, n := range perCPU {
			if n > 0 {
				out = append(out, loss.Count{Kind: loss.FromBPF[index], CPU: cpu, Count: n})
			}
		}
	}
	t.readKretMissed()
	for _, fn := range slices.Sorted(maps.Keys(t.kretMissed)) {
		if n := t.kretMissed[fn]; n > 0 {
			out = append(out, loss.Count{Kind: loss.KretprobeMissed, Where: fn, CPU: -1, Count: n})
		}
	}
	for _, p := range t.progs {
		// Before 5.12 the kernel has no such count: the field reads 0.
		if st, err := p.Stats(); err == nil && st.RecursionMisses > 0 {
			out = append(out, loss.Count{Kind: loss.RecursionMissed, Where: p.name, CPU: -1, Count: st.RecursionMisses})
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
