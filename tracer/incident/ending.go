package incident

import (
	"strconv"
	"strings"
)

// KernelVersion is a kernel's major, minor and patch level, as the race
// table's eras need it.
type KernelVersion [3]int

// ParseKernelRelease reads the version at the start of a release string
// (uname -r: "6.1.0-31-cloud-amd64" is 6.1.0); missing parts are 0.
func ParseKernelRelease(release string) KernelVersion {
	var v KernelVersion
	fields := strings.FieldsFunc(release, func(c rune) bool { return c < '0' || c > '9' })
	for i := 0; i < 3 && i < len(fields); i++ {
		v[i], _ = strconv.Atoi(fields[i])
	}
	return v
}

// AtLeast reports whether v is at least major.minor.
func (v KernelVersion) AtLeast(major, minor int) bool {
	return v[0] > major || (v[0] == major && v[1] >= minor)
}

func (v KernelVersion) String() string {
	return strconv.Itoa(v[0]) + "." + strconv.Itoa(v[1]) + "." + strconv.Itoa(v[2])
}

// Path is what, besides the kernel, decides how a clash ends.
type Path struct {
	Proto uint8 // IPPROTO_UDP (17), ...
	// NAT: a DNAT or SNAT rule binds the flow (not only the null binding
	// that a loaded nf_nat gives every flow).
	NAT bool
	// PortsMove: get_unique_tuple does not keep the source port, so the
	// same-origin rule cannot make two entries of one flow equal: the SNAT
	// rule asks for random ports (--random, --random-fully), or another
	// entry holds the port (then every SRC binding, the null one too,
	// searches for another, and the two packets of one socket can land on
	// different ones: docs/kernel-notes.md, The race types).
	PortsMove bool
}

// AllowsClash reports whether kernel k resolves clashes of protocol proto
// at all (the l4proto's allow_clash, docs/kernel-notes.md, The race types):
// UDP and UDPLITE always, GRE from 6.5 (d671fd82eaa9), ICMP and the generic
// tracker from 7.0 (f7becf0dad8f, 8a49fc8d8a3e). TCP never.
func AllowsClash(k KernelVersion, proto uint8) bool {
	switch proto {
	case 17, 136:
		return true
	case 47:
		return k.AtLeast(6, 5)
	case 6:
		return false
	}
	return k.AtLeast(7, 0)
}

// EndsOn says how kernel k ends race r on path p, from the race table's
// eras (docs/kernel-notes.md, The race types; Kernel eras at a glance):
// merged, nat-clash (reply-only insert) or dropped. It is "" where the
// race does not reach confirm as that race: race 2 on 5.0+ where ports
// do not move (the same-origin rule keeps the port, so it is race 1), race 5
// before 6.12 with NAT (NAT moves the loser's port instead), and an
// unknown race.
func (r RaceType) EndsOn(k KernelVersion, p Path) Outcome {
	if r < RaceIdentical || r > RaceReverse {
		return ""
	}
	if !AllowsClash(k, p.Proto) {
		// nf_ct_resolve_clash drops at once without allow_clash; race 5
		// still never clashes where NAT moves the port (below).
		if r == RaceReverse && p.NAT && !k.AtLeast(6, 12) {
			return ""
		}
		return OutcomeDropped
	}
	switch r {
	case RaceIdentical:
		// Before ed07d9a021df (4.19) a winner with any NAT binding was
		// never merged.
		if k.AtLeast(4, 19) || !p.NAT {
			return OutcomeMerged
		}
		return OutcomeDropped
	case RaceNATPort:
		if !p.PortsMove && k.AtLeast(5, 0) {
			return "" // 4e35c1cb9460 keeps the port: race 1
		}
		fallthrough
	case RaceEndpoints:
		// 6a757c07e51f (5.6): L's REPLY tuple is unique, so it is
		// inserted reply-only.
		if k.AtLeast(5, 6) {
			return OutcomeNATClash
		}
		return OutcomeDropped
	case RaceSNATPort:
		return OutcomeDropped // no kernel merges two flows with one REPLY tuple
	}
	// RaceReverse: a4e6a1031e77 (6.12) merges; before, the shortcut for a
	// winner without NAT merged, and with NAT the port moved (no clash).
	switch {
	case k.AtLeast(6, 12), !p.NAT:
		return OutcomeMerged
	}
	return ""
}
