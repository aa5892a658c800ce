package tracer

import "fmt"

// eraMarkers are functions whose presence in kallsyms dates the conntrack
// code a kernel carries, whatever its version string says: a vendor kernel
// (RHEL's 4.18, 5.14) backports netfilter changes without changing its
// version (docs/kernel-notes.md, Probe points: signatures and inlining).
// nf_ct_resolve_clash_harder came with the 5.6 clash rework (6a757c07e51f),
// which also gave nf_ct_resolve_clash its (skb, h, reply_hash) arguments and
// split out __nf_ct_resolve_clash.
var eraMarkers = []string{"nf_ct_resolve_clash_harder"}

// signature is the argument list a probed function has here, and what
// told: BTF (the function's own prototype), a marker in kallsyms, or, when
// neither is there, the version string.
type signature struct {
	older bool   // the older argument list
	from  string // for the plan: how it was decided, when by the version alone
}

// ctInSignature: 4.19 has nf_conntrack_in(net, pf, hooknum, skb); 4.20+
// (skb, state) (93e66024b024).
func (k Kernel) ctInSignature() signature {
	if n := k.funcParams("nf_conntrack_in"); n >= 0 {
		return signature{older: n == 4}
	}
	return k.byVersion("nf_conntrack_in", 4, 20)
}

// clashSignature: 4.19-5.5 nf_ct_resolve_clash(net, skb, ctinfo, h), likely
// inlined; 5.6+ (skb, h, reply_hash), __cold noinline.
func (k Kernel) clashSignature() signature {
	if n := k.funcParams("nf_ct_resolve_clash"); n >= 0 {
		return signature{older: n == 4}
	}
	for _, marker := range append([]string{"__nf_ct_resolve_clash"}, eraMarkers...) {
		if _, ok := k.Symbols[marker]; ok {
			return signature{}
		}
	}
	return k.byVersion("nf_ct_resolve_clash", 5, 6)
}

// byVersion decides from the version string alone, and says so.
func (k Kernel) byVersion(fn string, major, minor int) signature {
	older := !k.AtLeast(major, minor)
	which := "the newer"
	if older {
		which = "the older"
	}
	return signature{older: older, from: fmt.Sprintf("%s's arguments taken as %s list from the version %s (no BTF or marker tells; a vendor backport may differ)", fn, which, k.Release)}
}
