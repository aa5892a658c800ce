package tracer

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/ctprobe/ctprobe/tracer/incident"
)

// Kernel is what ctprobe needs to know about the running kernel to plan its
// probes. Everything is read from the kernel itself, never assumed.
type Kernel struct {
	Release string
	Version [3]int
	BTF     bool // /sys/kernel/btf/vmlinux: CO-RE and fentry/fexit possible
	Kprobes bool // a kprobe PMU or tracefs kprobe_events exists
	// Symbols maps each probed function to its kallsyms names (the exact
	// name or compiler clones such as "init_conntrack.isra.0") and module.
	Symbols map[string]Symbol
	// Conntrack is false when nf_conntrack is neither built in nor loaded.
	Conntrack bool
	// Params holds, for each probed function that BTF describes (vmlinux
	// or its module), its number of parameters.
	Params map[string]int
	// TaskStorage says that tracing programs may keep per-task storage
	// (5.13+), where --all's kprobe pair keeps confirm's skb for its
	// kretprobe. Finding out loads a program: Open sets it, with privileges.
	TaskStorage bool
}

// Symbol is one function in /proc/kallsyms.
type Symbol struct {
	Names  []string // exact name first, then suffixed clones
	Module string   // "" for vmlinux
}

// Exact reports whether the unsuffixed name exists (fentry needs it).
func (s Symbol) Exact(fn string) bool { return len(s.Names) > 0 && s.Names[0] == fn }

// ProbeKernel reads the running kernel's release, BTF, kprobe support and
// the symbols of the conntrack functions ctprobe probes.
func ProbeKernel() (Kernel, error) {
	var k Kernel
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return k, fmt.Errorf("uname: %w", err)
	}
	k.Release = unix.ByteSliceToString(uts.Release[:])
	k.Version = parseRelease(k.Release)
	_, err := os.Stat("/sys/kernel/btf/vmlinux")
	k.BTF = err == nil
	k.Kprobes = kprobesAvailable()
	syms, err := readKallsyms("/proc/kallsyms", append(probedFunctions, eraMarkers...))
	if err != nil {
		return k, err
	}
	k.Symbols = syms
	_, k.Conntrack = syms["__nf_conntrack_confirm"]
	if k.BTF {
		k.Params = btfParams(syms, probedFunctions)
	}
	return k, nil
}

func parseRelease(r string) [3]int { return incident.ParseKernelRelease(r) }

// AtLeast reports whether the kernel is at least major.minor.
func (k Kernel) AtLeast(major, minor int) bool {
	return incident.KernelVersion(k.Version).AtLeast(major, minor)
}

// kprobesAvailable: CONFIG_KPROBES gives a kprobe PMU (4.17+) or, on older
// kernels and for kretprobes with maxactive, tracefs kprobe_events.
func kprobesAvailable() bool {
	if _, err := os.Stat("/sys/bus/event_source/devices/kprobe"); err == nil {
		return true
	}
	for _, p := range []string{"/sys/kernel/tracing/kprobe_events", "/sys/kernel/debug/tracing/kprobe_events"} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

// readKallsyms finds the wanted functions, including compiler clones
// ("name.isra.0", "name.constprop.0"), which only kprobes can attach to.
func readKallsyms(path string, wanted []string) (map[string]Symbol, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read kernel symbols: %w", err)
	}
	defer f.Close()
	want := make(map[string]bool, len(wanted))
	for _, w := range wanted {
		want[w] = true
	}
	out := map[string]Symbol{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || (fields[1] != "t" && fields[1] != "T") {
			continue
		}
		name, base := fields[2], fields[2]
		if i := strings.IndexByte(name, '.'); i > 0 {
			base = name[:i]
			if strings.HasSuffix(name, ".cold") {
				continue // the cold part of a split function is not an entry point
			}
		}
		if !want[base] {
			continue
		}
		s := out[base]
		if len(fields) > 3 {
			s.Module = strings.Trim(fields[3], "[]")
		}
		if name == base {
			s.Names = append([]string{name}, s.Names...)
		} else {
			s.Names = append(s.Names, name)
		}
		out[base] = s
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read kernel symbols: %w", err)
	}
	return out, nil
}

// btfParams reads each function's parameter count from BTF once, at start:
// parsing vmlinux BTF is the slow part of starting, and one cache serves
// every module.
func btfParams(syms map[string]Symbol, fns []string) map[string]int {
	cache := btf.NewCache()
	out := map[string]int{}
	for _, fn := range fns {
		var spec *btf.Spec
		var err error
		if m := syms[fn].Module; m != "" {
			spec, err = cache.Module(m)
		} else {
			spec, err = cache.Kernel()
		}
		if err != nil {
			continue
		}
		var f *btf.Func
		if err := spec.TypeByName(fn, &f); err != nil {
			continue
		}
		if proto, ok := f.Type.(*btf.FuncProto); ok {
			out[fn] = len(proto.Params)
		}
	}
	return out
}

// funcParams returns the number of parameters of a kernel function from BTF
// (vmlinux or its module), or -1 when BTF does not describe it.
func (k Kernel) funcParams(fn string) int {
	if n, ok := k.Params[fn]; ok {
		return n
	}
	return -1
}

// hasBTFFunc reports whether fentry/fexit could target fn: it needs a BTF
// FUNC record under the exact name.
func (k Kernel) hasBTFFunc(fn string) bool { return k.funcParams(fn) >= 0 }

// ClashEra describes how this kernel settles clashes (docs/kernel-notes.md, What confirm returns, per era).
func (k Kernel) ClashEra() string {
	switch {
	case !k.AtLeast(4, 19):
		return "before 4.19: a clash with any NAT is dropped (insert_failed)"
	case !k.AtLeast(5, 6):
		return "4.19-5.5: identical clashes are merged, different endpoints dropped; insert_failed counts every clash"
	case !k.AtLeast(5, 10):
		return "5.6-5.9: merge or reply-only insert (IPS_NAT_CLASH); insert_failed counts every clash"
	case !k.AtLeast(6, 12):
		return "5.10+: merge or reply-only insert; clash_resolve counts settled clashes, insert_failed/drop the rest"
	}
	return "6.12+: as 5.10+, and reverse collisions are merged too"
}

// haveTaskStorage asks the kernel whether a kprobe program may call
// bpf_task_storage_get (tracing programs may since 5.13). Any other answer,
// such as a refusal for want of privileges, is a no: the entries map then
// serves instead.
func haveTaskStorage() bool {
	return features.HaveProgramHelper(ebpf.Kprobe, asm.FnTaskStorageGet) == nil
}

// errNoConntrack is returned when nf_conntrack is not loaded.
var errNoConntrack = errors.New("nf_conntrack is not loaded: no conntrack on this host yet (load it with `modprobe nf_conntrack`, or start tracing after a NAT/conntrack rule exists)")

// DatingFunctions are every function ctprobe may probe or date the kernel
// by: what `ctprobe probes` shows the kernel's evidence on.
func DatingFunctions() []string { return append(slices.Clone(probedFunctions), eraMarkers...) }

// FuncParams is the function's parameter count from BTF (vmlinux or its
// module), or -1 when BTF does not describe it.
func (k Kernel) FuncParams(fn string) int { return k.funcParams(fn) }
