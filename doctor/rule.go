package doctor

import (
	"net/netip"
	"strconv"
	"strings"
)

// Rule is one rule of a nat table, whichever tool wrote it, reduced to what
// decides the races: what it matches, where it jumps, what NAT or mark it
// applies. Text is the rule as the tool printed it, for the evidence.
type Rule struct {
	Tool   string `json:"tool"`   // iptables-legacy, iptables-nft, ip6tables-legacy, ip6tables-nft, nft
	Family string `json:"family"` // ip, ip6, inet
	Table  string `json:"table"`
	Chain  string `json:"chain"`
	Text   string `json:"text"`
	// Base: the chain is a base chain (a hook runs it) rather than one
	// reached only by jumps.
	Base bool `json:"-"`

	Proto   string     `json:"-"` // "udp", "tcp", ... ; "" matches any
	Dst     string     `json:"-"` // destination address match ("10.96.0.10/32"); "" any
	DstNeg  bool       `json:"-"`
	DstPort string     `json:"-"` // "53"; "" any
	Src     string     `json:"-"` // source address match; "" any
	SrcNeg  bool       `json:"-"`
	Mark    *MarkMatch `json:"-"`

	Jumps   []string `json:"-"` // chains jumped to (a verdict map names several)
	Return  bool     `json:"-"`
	NAT     *NAT     `json:"-"`
	SetMark *MarkOp  `json:"-"`
}

// MarkMatch is a match on the packet mark: mark & Mask == Value (or !=).
type MarkMatch struct {
	Value, Mask uint32
	Negated     bool
}

// MarkOp is a change of the packet mark: set (mark = mark&^Mask | Value),
// or, xor, and.
type MarkOp struct {
	Op          string
	Value, Mask uint32
}

// clears says whether the operation leaves the bits of mask at 0 in a
// packet where they were set.
func (m *MarkOp) clears(mask uint32) bool {
	switch m.Op {
	case "set":
		return m.Mask&mask == mask && m.Value&mask == 0
	case "xor":
		return m.Value&mask == mask
	case "and":
		return m.Value&mask == 0
	}
	return false
}

// sets says whether the operation sets every bit of mask.
func (m *MarkOp) sets(mask uint32) bool {
	switch m.Op {
	case "set", "or":
		return m.Value&mask == mask
	}
	return false
}

// NAT is the NAT statement of a rule.
type NAT struct {
	Kind string // dnat, snat, masquerade
	// To are the addresses (with ports, as written) the rule maps to; a
	// map (numgen, jhash) gives one per element.
	To []string
	// PortMin, PortMax: the port range asked for; 0 when none (the kernel
	// then keeps the port where it can, else searches 1024-65535).
	PortMin, PortMax    uint16
	Random, RandomFully bool
}

// udp says whether the rule can match UDP.
func (r *Rule) udp() bool { return r.Proto == "" || r.Proto == "udp" || r.Proto == "17" }

// ports is the number of source ports an SNAT rule may choose from; 0 when
// it gives no range.
func (n *NAT) ports() int {
	if n.PortMin == 0 {
		return 0
	}
	return int(n.PortMax) - int(n.PortMin) + 1
}

// randomPorts: --random or --random-fully (NF_NAT_RANGE_PROTO_RANDOM_ALL):
// get_unique_tuple skips keeping the source port and starts its search at
// a random offset (docs/kernel-notes.md, The race types).
func (n *NAT) randomPorts() bool { return n.Random || n.RandomFully }

// endpoints counts the addresses a DNAT rule maps to; an address range
// ("10.0.0.1-10.0.0.3") counts each address.
func (n *NAT) endpoints() []string {
	var out []string
	for _, to := range n.To {
		addr, _ := splitHostPort(to)
		if lo, hi, ok := strings.Cut(addr, "-"); ok {
			a, err1 := netip.ParseAddr(lo)
			b, err2 := netip.ParseAddr(hi)
			if err1 == nil && err2 == nil && a.Is4() && b.Is4() {
				for x, i := a, 0; x.Compare(b) <= 0 && i < 256; x, i = x.Next(), i+1 {
					out = append(out, x.String())
				}
				continue
			}
		}
		out = append(out, to)
	}
	return out
}

// splitHostPort splits "10.0.0.1:53", "[fd00::1]:53", "10.0.0.1-10.0.0.2:1000-2000"
// or a bare address into address and port part.
func splitHostPort(s string) (addr, port string) {
	if strings.HasPrefix(s, "[") {
		if i := strings.Index(s, "]"); i > 0 {
			return s[1:i], strings.TrimPrefix(s[i+1:], ":")
		}
		return s, ""
	}
	if strings.Count(s, ":") == 1 {
		a, p, _ := strings.Cut(s, ":")
		return a, p
	}
	return s, ""
}

// parsePortRange reads "40000" or "1000-2000" (nft also writes "1000-2000").
func parsePortRange(s string) (lo, hi uint16, ok bool) {
	a, b, isRange := strings.Cut(s, "-")
	x, err := strconv.ParseUint(a, 10, 16)
	if err != nil {
		return 0, 0, false
	}
	y := x
	if isRange {
		if y, err = strconv.ParseUint(b, 10, 16); err != nil || y < x {
			return 0, 0, false
		}
	}
	return uint16(x), uint16(y), true
}

// addrMatches says whether a match on address (a host or a prefix, as a
// rule writes it) covers addr.
func addrMatches(match string, addr netip.Addr) bool {
	if p, err := netip.ParsePrefix(match); err == nil {
		return p.Contains(addr)
	}
	a, err := netip.ParseAddr(match)
	return err == nil && a == addr
}
