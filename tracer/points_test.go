package tracer

import (
	"slices"
	"strings"
	"testing"

	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/mode"
	"github.com/ctprobe/ctprobe/tracer/probe"
)

func pointByName(t *testing.T, name string) point {
	t.Helper()
	for _, p := range points {
		if p.name == name {
			return p
		}
	}
	t.Fatalf("no point %q", name)
	return point{}
}

// Without BTF the signature variant follows the kernel version: 4.19 has
// nf_conntrack_in(net, pf, hooknum, skb) and no fentry; before 5.6
// nf_ct_resolve_clash(net, skb, ctinfo, h) (docs/kernel-notes.md, Kernel eras at a glance).
func TestPlanPicksSignatureVariants(t *testing.T) {
	for _, c := range []struct {
		release             string
		ctIn, clash         string
		ctInFentry, clashFn bool
	}{
		{"4.19.0-27-amd64", probe.BPFProgKprobeCtInV419, probe.BPFProgKprobeClashV419, false, false},
		{"5.4.0-150-generic", probe.BPFProgKprobeCtIn, probe.BPFProgKprobeClashV419, true, false},
		{"5.10.0-30-amd64", probe.BPFProgKprobeCtIn, probe.BPFProgKprobeClash, true, true},
		{"6.1.0-50-cloud-amd64", probe.BPFProgKprobeCtIn, probe.BPFProgKprobeClash, true, true},
	} {
		k := Kernel{Release: c.release, Version: parseRelease(c.release)} // no BTF
		in := pointByName(t, "ct_in").candidates(k, mode.Default, nil)
		if in[0].kprobe.entry != c.ctIn || (in[0].fentry.exit != "") != c.ctInFentry {
			t.Errorf("%s ct_in: %+v", c.release, in)
		}
		// The default mode reads the verdict at nf_ct_resolve_clash's
		// return; --timeline joins the clash at confirm instead.
		cl := pointByName(t, "clash").candidates(k, mode.Default, nil)
		if cl[0].kprobe.entry != c.clash || cl[0].kprobe.exit != probe.BPFProgKretprobeClash || len(cl) != 1 {
			t.Errorf("%s clash, default mode: %+v", c.release, cl)
		}
		// --timeline and --all take it at confirm's exit. __nf_ct_resolve_clash
		// (5.6+) is a fallback only where it exists, and only there.
		for _, o := range []mode.Mode{mode.Timeline, mode.All} {
			cl = pointByName(t, "clash").candidates(k, o, nil)
			if cl[0].kprobe.entry != c.clash || cl[0].kprobe.exit != "" {
				t.Errorf("%s clash, %+v: %+v", c.release, o, cl)
			}
			if hasFallback := len(cl) > 1 && cl[1].fn == "__nf_ct_resolve_clash"; hasFallback != c.clashFn {
				t.Errorf("%s clash fallback, %+v: %+v", c.release, o, cl)
			}
		}
	}
	// The NAT point prefers get_unique_tuple where it is a symbol.
	nat := pointByName(t, "nat").candidates(Kernel{}, mode.Timeline, nil)
	if nat[0].fn != "get_unique_tuple" || nat[1].fn != "nf_nat_setup_info" {
		t.Errorf("nat candidates %+v", nat)
	}
}

// The default mode needs confirm only where no clash probe attached (4.19-5.5,
// inlined): then it is required, since races are seen nowhere else.
func TestPlanDefaultModeUsesConfirmOnlyWithoutClash(t *testing.T) {
	confirm := pointByName(t, "confirm")
	for _, c := range []struct {
		opts             mode.Mode
		clash            bool
		needed, required bool
	}{
		{mode.Default, true, false, false},
		{mode.Default, false, true, true},
		{mode.Timeline, true, true, true},
		{mode.All, true, true, true},
		{mode.All, false, true, true},
		{mode.AllTimeline, true, true, true},
	} {
		needed, required := confirm.use(c.opts, func(p string) bool { return p == "clash" && c.clash })
		if needed != c.needed || required != c.required {
			t.Errorf("%+v, clash attached %v: needed %v required %v", c.opts, c.clash, needed, required)
		}
	}
	for _, name := range []string{"ct_in", "nat"} {
		for _, o := range []mode.Mode{mode.Default, mode.All} {
			if needed, _ := pointByName(t, name).use(o, func(string) bool { return true }); needed {
				t.Errorf("%+v uses %s", o, name)
			}
		}
	}
}

// --all reads a new ct at confirm's exit alone where the clash probe took
// the clashes; without it (4.19-5.5), and with --timeline, confirm's entry
// is probed too.
func TestPlanAllProbesConfirmExitOnly(t *testing.T) {
	confirm := pointByName(t, "confirm")
	for _, c := range []struct {
		opts      mode.Mode
		clash     bool
		wantEntry bool
	}{
		{mode.All, true, false},
		{mode.All, false, true},
		{mode.AllTimeline, true, true},
		{mode.Default, false, true},
	} {
		cs := confirm.candidates(Kernel{}, c.opts, func(p string) bool { return p == "clash" && c.clash })
		// Exit-only is also what kprobe.session can do without the
		// entries map; the kprobe pair stays its fallback.
		if len(cs) != 1 || (cs[0].fentry.entry != "") != c.wantEntry || (cs[0].session == "") != c.wantEntry ||
			cs[0].fentry.exit == "" || cs[0].kprobe.entry == "" || cs[0].kprobe.exit == "" {
			t.Errorf("%+v, clash attached %v: %+v", c.opts, c.clash, cs)
		}
	}
}

// --all's kprobe pair keeps confirm's skb for its kretprobe in the task's
// own storage where tracing programs may use it (5.13+), else in the
// entries map, and the plan's reason says which.
func TestPlanAllKprobePairKeepsSkb(t *testing.T) {
	confirm := pointByName(t, "confirm")
	clash := func(p string) bool { return p == "clash" }
	for _, c := range []struct {
		taskStorage bool
		pair        programs
		note        string
	}{
		{false, programs{probe.BPFProgKprobeConfirm, probe.BPFProgKretprobeConfirmNew}, "hash map"},
		{true, programs{probe.BPFProgKprobeConfirmTask, probe.BPFProgKretprobeConfirmNewTask}, "task storage"},
	} {
		cs := confirm.candidates(Kernel{TaskStorage: c.taskStorage}, mode.All, clash)
		if cs[0].kprobe != c.pair || !strings.Contains(cs[0].kprobeNote, c.note) {
			t.Errorf("task storage %v: kprobe %+v, note %q; want %+v and %q", c.taskStorage, cs[0].kprobe, cs[0].kprobeNote, c.pair, c.note)
		}
	}
}

// The point list is the one place that says what ctprobe probes: every
// event kind the decoder knows comes from exactly one point, named as the
// kind, and every point's functions are looked up at start.
func TestPointsCoverEveryEventKind(t *testing.T) {
	for k := event.CTIn; k <= event.Confirm; k++ {
		var names []string
		for _, p := range points {
			if p.event == k {
				names = append(names, p.name)
			}
		}
		if len(names) != 1 || names[0] != k.String() {
			t.Errorf("event kind %v comes from points %q", k, names)
		}
	}
	for _, p := range points {
		for _, m := range []mode.Mode{mode.Default, mode.All, mode.Timeline, mode.AllTimeline} {
			for _, c := range p.candidates(Kernel{}, m, func(string) bool { return true }) {
				if c.tracepoint == "" && !slices.Contains(probedFunctions, c.fn) {
					t.Errorf("%s: candidate %s is not among the functions read from kallsyms", p.name, c.fn)
				}
			}
		}
	}
}

// --timeline attaches the NAT binding and, with the clash probe, confirm by
// their exits alone where fexit serves (the ct's history and the clash
// record hold what the entries would save); without the clash probe
// confirm's entry indexes cts by tuple, and kprobe mode keeps its pairs.
func TestPlanTimelineExitsAlone(t *testing.T) {
	clash := func(p string) bool { return p == "clash" }
	for _, c := range pointByName(t, "nat").candidates(Kernel{}, mode.Timeline, clash) {
		if c.fentry.entry != "" || c.fentry.exit == "" || c.kprobe.entry == "" {
			t.Errorf("--timeline nat %s: %+v", c.fn, c)
		}
	}
	for _, c := range pointByName(t, "nat").candidates(Kernel{}, mode.AllTimeline, clash) {
		if c.fentry.entry == "" {
			t.Errorf("--all --timeline nat %s streams bindings of cts without history: needs its entry: %+v", c.fn, c)
		}
	}
	confirm := pointByName(t, "confirm")
	if cs := confirm.candidates(Kernel{}, mode.Timeline, clash); cs[0].fentry != (programs{"", probe.BPFProgFexitConfirmHist}) {
		t.Errorf("--timeline confirm with the clash probe: %+v", cs[0].fentry)
	}
	if cs := confirm.candidates(Kernel{}, mode.Timeline, func(string) bool { return false }); cs[0].fentry.entry == "" {
		t.Errorf("--timeline confirm without the clash probe: %+v", cs[0].fentry)
	}
}
