package tracer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ctprobe/ctprobe/tracer/mode"
	"github.com/ctprobe/ctprobe/tracer/plan"
	"github.com/ctprobe/ctprobe/tracer/probe"
)

// kernelFixture is what `ctprobe probes -o json` recorded of a kernel (or
// a kernel built by hand to stand for one this lab cannot boot), and the
// argument lists its functions have.
type kernelFixture struct {
	Recorded  string `json:"recorded"`
	Release   string `json:"kernel"`
	BTF       bool   `json:"btf"`
	Functions []struct {
		Name   string   `json:"name"`
		Names  []string `json:"kallsyms"`
		Module string   `json:"module"`
		Params int      `json:"btf_params"`
	} `json:"functions"`
	// Want says, per function, "newer" or "older" argument list, and
	// ", by version" where the version string alone decides.
	Want struct {
		CtIn  string `json:"ct_in"`
		Clash string `json:"clash"`
	} `json:"want"`
}

func (f *kernelFixture) kernel() Kernel {
	k := Kernel{Release: f.Release, Version: parseRelease(f.Release), BTF: f.BTF, Kprobes: true,
		Symbols: map[string]Symbol{}, Params: map[string]int{}}
	for _, fn := range f.Functions {
		if len(fn.Names) > 0 {
			k.Symbols[fn.Name] = Symbol{Names: fn.Names, Module: fn.Module}
		}
		if fn.Params >= 0 {
			k.Params[fn.Name] = fn.Params
		}
	}
	return k
}

func describe(s signature) string {
	d := "newer"
	if s.older {
		d = "older"
	}
	if s.from != "" {
		d += ", by version"
	}
	return d
}

// The argument list of each probed function is decided from what the
// kernel shows (BTF, then kallsyms markers), the version string only where
// neither tells, and the plan says so then: on the kernels recorded here
// and on hand-built ones that stand for vendor kernels.
func TestSignatureDecisions(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("testdata", "kernels", "*.json"))
	if err != nil || len(paths) < 3 {
		t.Fatalf("kernel fixtures: %v %v", paths, err)
	}
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var f kernelFixture
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		k := f.kernel()
		if got := describe(k.ctInSignature()); got != f.Want.CtIn {
			t.Errorf("%s (%s): nf_conntrack_in %s, want %s", path, f.Release, got, f.Want.CtIn)
		}
		if got := describe(k.clashSignature()); got != f.Want.Clash {
			t.Errorf("%s (%s): nf_ct_resolve_clash %s, want %s", path, f.Release, got, f.Want.Clash)
		}
		// The programs chosen follow the decision.
		older := strings.HasPrefix(f.Want.Clash, "older")
		cs := pointByName(t, "clash").candidates(k, mode.Default, nil)
		if (cs[0].kprobe.entry == probe.BPFProgKprobeClashV419) != older {
			t.Errorf("%s: clash programs %+v", path, cs[0].kprobe)
		}
		if strings.HasSuffix(f.Want.Clash, "by version") != strings.Contains(cs[0].kprobeNote, "from the version") {
			t.Errorf("%s: the plan's note %q", path, cs[0].kprobeNote)
		}
	}
}

// A function that kallsyms has only as a compiler clone (.isra, .constprop)
// is not probed: its arguments may differ from the original's. The plan
// says so.
func TestClonesAreRefused(t *testing.T) {
	tr := &Tracer{Kernel: Kernel{Release: "6.1.0", Version: parseRelease("6.1.0"), Kprobes: true, Symbols: map[string]Symbol{
		"nf_ct_resolve_clash": {Names: []string{"nf_ct_resolve_clash.constprop.0"}, Module: "nf_conntrack"},
	}}}
	tr.attach(Options{Mode: mode.Default})
	for _, e := range tr.Plan {
		if e.Point != "clash" {
			continue
		}
		if e.Status != plan.Failed || !strings.Contains(e.Reason, "compiler clone nf_ct_resolve_clash.constprop.0") {
			t.Errorf("clash: %+v", e)
		}
		return
	}
	t.Error("no clash entry in the plan")
}
