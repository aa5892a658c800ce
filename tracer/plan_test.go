package tracer

import (
	"testing"

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
// nf_ct_resolve_clash(net, skb, ctinfo, h) (kernel-facts §1).
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
		in := pointByName(t, "ct_in").candidates(k)
		if in[0].kprobe.entry != c.ctIn || (in[0].fentry.exit != "") != c.ctInFentry {
			t.Errorf("%s ct_in: %+v", c.release, in)
		}
		cl := pointByName(t, "clash").candidates(k)
		if cl[0].kprobe.entry != c.clash {
			t.Errorf("%s clash: %+v", c.release, cl)
		}
		// __nf_ct_resolve_clash (5.6+) is a fallback only where it exists.
		if hasFallback := len(cl) > 1 && cl[1].fn == "__nf_ct_resolve_clash"; hasFallback != c.clashFn {
			t.Errorf("%s clash fallback: %+v", c.release, cl)
		}
	}
	// The NAT point prefers get_unique_tuple where it is a symbol.
	nat := pointByName(t, "nat").candidates(Kernel{})
	if nat[0].fn != "get_unique_tuple" || nat[1].fn != "nf_nat_setup_info" {
		t.Errorf("nat candidates %+v", nat)
	}
}
