package doctor

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/ctprobe/ctprobe/tracer/incident"
)

// service is a UDP DNAT found on the node: a destination (a ClusterIP) and
// the endpoints that rules reachable from its match map it to.
type service struct {
	dst, port string
	endpoints []string
	rule      string // the rule that matches the destination
	netns     string // where it is
}

// node is what findings in one namespace need to know of the others.
type node struct {
	services  []service
	conntrack bool // conntrack is loaded (some namespace has its sysctls)
	nat       bool // some namespace has a nat rule
	// parallel: some resolver on the node sends A and AAAA at once.
	parallel   bool
	servicesOf map[uint64][]service
}

func analyzeNode(nss []Namespace) *node {
	n := &node{servicesOf: map[uint64][]service{}}
	for i := range nss {
		ns := &nss[i]
		n.conntrack = n.conntrack || ns.Conntrack != nil
		for _, r := range ns.Rules {
			n.nat = n.nat || r.NAT != nil
		}
		for _, r := range ns.Resolvers {
			n.parallel = n.parallel || r.Parallel
		}
		svcs := udpServices(ns)
		n.servicesOf[ns.Inode] = svcs
		n.services = append(n.services, svcs...)
	}
	return n
}

// chainKey names a chain within the rules of one tool, family and table.
type chainKey struct{ tool, family, table, chain string }

func chainsOf(rules []Rule) map[chainKey][]*Rule {
	m := map[chainKey][]*Rule{}
	for i := range rules {
		r := &rules[i]
		k := chainKey{r.Tool, r.Family, r.Table, r.Chain}
		m[k] = append(m[k], r)
	}
	return m
}

// udpServices finds the UDP DNATs of a namespace: each rule that matches a
// destination address and, itself or through the chains it jumps to, maps
// UDP to endpoints (kube-proxy: KUBE-SERVICES -d VIP → KUBE-SVC → KUBE-SEP
// DNAT; nft: dnat to numgen ... map).
func udpServices(ns *Namespace) []service {
	chains := chainsOf(ns.Rules)
	byDst := map[string]int{}
	var out []service
	for i := range ns.Rules {
		r := &ns.Rules[i]
		if r.Dst == "" || r.DstNeg || !r.udp() || (len(r.Jumps) == 0 && (r.NAT == nil || r.NAT.Kind != "dnat")) {
			continue
		}
		eps := dnatTargets(r, chains, map[chainKey]bool{})
		if len(eps) == 0 {
			continue
		}
		slices.Sort(eps)
		eps = slices.Compact(eps)
		key := r.Dst + " " + r.DstPort
		if j, ok := byDst[key]; ok {
			if len(eps) > len(out[j].endpoints) {
				out[j].endpoints = eps
			}
			continue
		}
		byDst[key] = len(out)
		out = append(out, service{dst: r.Dst, port: r.DstPort, endpoints: eps, rule: r.Text, netns: ns.Name})
	}
	return out
}

// dnatTargets are the UDP DNAT targets a rule leads to.
func dnatTargets(r *Rule, chains map[chainKey][]*Rule, seen map[chainKey]bool) []string {
	if !r.udp() {
		return nil
	}
	if r.NAT != nil && r.NAT.Kind == "dnat" {
		return r.NAT.endpoints()
	}
	var out []string
	for _, j := range r.Jumps {
		k := chainKey{r.Tool, r.Family, r.Table, j}
		if seen[k] {
			continue
		}
		seen[k] = true
		for _, sub := range chains[k] {
			out = append(out, dnatTargets(sub, chains, seen)...)
		}
	}
	return out
}

// serviceFor finds the UDP DNAT that a query to addr port 53 meets.
func (n *node) serviceFor(addr netip.Addr) *service {
	for i := range n.services {
		s := &n.services[i]
		if (s.port == "" || s.port == "53") && addrMatches(s.dst, addr) {
			return s
		}
	}
	return nil
}

// findings concludes on one namespace (docs/doctor.md, Findings).
func (n *node) findings(ns *Namespace, k incident.KernelVersion, fill float64) []Finding {
	var out []Finding
	for _, s := range n.servicesOf[ns.Inode] {
		if len(s.endpoints) < 2 {
			continue
		}
		f := Finding{
			ID:         incident.FindingDNATUDPMultiEndpoint,
			Summary:    fmt.Sprintf("UDP to %s is DNAT'd to %d endpoints: two packets of one flow (A and AAAA) can pick different ones (race 3)", destString(s), len(s.endpoints)),
			Evidence:   []string{"rule: " + s.rule, "endpoints: " + strings.Join(s.endpoints, ", ")},
			Mitigation: incident.RaceEndpoints.Mitigation(incident.Facts{Proto: 17}),
		}
		f.predict(k, incident.Path{Proto: 17, NAT: true}, incident.RaceEndpoints)
		out = append(out, f)
	}
	chains := chainsOf(ns.Rules)
	for i := range ns.Rules {
		r := &ns.Rules[i]
		if r.NAT == nil || r.NAT.Kind == "dnat" || !r.udp() {
			continue
		}
		if f, ok := snatCollision(r, k); ok {
			out = append(out, f)
		}
		gate, gateRule := markGate(r, chains)
		if gate != 0 && !markCleared(r, gate, chains) {
			out = append(out, tunnelDoubleSNAT(r, gate, ns.Tunnels, k))
		}
		if r.NAT.randomPorts() && n.parallel {
			if f, ok := randomFullyRace2(r, gate, gateRule, ns.Rules, chains, k); ok {
				out = append(out, f)
			}
		}
	}
	if c := ns.Conntrack; c != nil && c.Max > 0 && float64(c.Count) >= fill*float64(c.Max) {
		out = append(out, tableFill(c, fill))
	}
	for _, r := range ns.Resolvers {
		if r.Parallel {
			out = append(out, n.resolverFinding(r, k))
		}
	}
	slices.SortStableFunc(out, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(severityOrder(a.Severity), severityOrder(b.Severity)), cmp.Compare(a.ID, b.ID))
	})
	return out
}

func severityOrder(s Severity) int {
	switch s {
	case SeverityDrops:
		return 0
	case SeveritySettled:
		return 1
	}
	return 2
}

func destString(s service) string {
	if s.port == "" {
		return s.dst
	}
	return s.dst + " port " + s.port
}

// predict adds how kernel k ends each race on path p, and sets the
// severity: drops if any ends dropped, settled if all are settled, info
// when none reaches confirm.
func (f *Finding) predict(k incident.KernelVersion, p incident.Path, races ...incident.RaceType) {
	for _, r := range races {
		if o := r.EndsOn(k, p); o != "" {
			f.Races = append(f.Races, Prediction{Race: r, Outcome: o})
		}
	}
	f.Severity = SeverityInfo
	for _, pr := range f.Races {
		if pr.Outcome == incident.OutcomeDropped {
			f.Severity = SeverityDrops
			return
		}
		f.Severity = SeveritySettled
	}
}

// narrowPorts: with fewer SNAT ports than this, two concurrent flows to one
// server collide often even with random ports.
const narrowPorts = 64

// snatCollision: UDP source NAT that can give two flows one REPLY tuple
// (race 4, dropped on every kernel: docs/kernel-notes.md, The race types).
// Without random ports get_unique_tuple keeps a client's source port while
// it looks free, and two unconfirmed flows from the same port both keep it;
// with one port (or a few) they collide whatever the flags.
func snatCollision(r *Rule, k incident.KernelVersion) (Finding, bool) {
	ports := r.NAT.ports()
	var why string
	switch {
	case ports == 1:
		why = fmt.Sprintf("one source port (%d): every second flow to the same server address and port while the first lives has the same REPLY tuple", r.NAT.PortMin)
	case ports > 0 && ports < narrowPorts:
		why = fmt.Sprintf("%d source ports (%d-%d): concurrent flows to one server collide often, random or not", ports, r.NAT.PortMin, r.NAT.PortMax)
	case !r.NAT.randomPorts():
		why = "no --random-fully: two flows from the same source port to the same server keep that port while both are unconfirmed, so their REPLY tuples are equal"
	default:
		return Finding{}, false
	}
	f := Finding{
		ID:         incident.FindingSNATPortCollision,
		Summary:    "UDP source NAT can give two flows one reply tuple: the second is dropped at confirm (race 4, every kernel)",
		Evidence:   []string{"rule: " + r.Text, why},
		Mitigation: incident.RaceSNATPort.Mitigation(incident.Facts{Proto: 17}),
	}
	f.predict(k, incident.Path{Proto: 17, NAT: true}, incident.RaceSNATPort)
	return f, true
}

// markGate finds the mark a masquerade depends on: its own mark match, or
// an earlier "! --mark B -j RETURN" in its chain (kube-proxy's form since
// kubernetes#92035). It returns the bits and the rule that tests them.
func markGate(m *Rule, chains map[chainKey][]*Rule) (uint32, *Rule) {
	if mm := m.Mark; mm != nil && !mm.Negated && mm.Value&mm.Mask != 0 {
		return mm.Value & mm.Mask, m
	}
	for _, r := range chains[chainKey{m.Tool, m.Family, m.Table, m.Chain}] {
		if r == m {
			break
		}
		if mm := r.Mark; r.Return && mm != nil && mm.Negated && mm.Value&mm.Mask != 0 {
			return mm.Value & mm.Mask, r
		}
	}
	return 0, nil
}

// markCleared says whether a rule before m in its chain clears the gate
// bits, so that a packet masqueraded once does not carry them when it is
// encapsulated and crosses POSTROUTING again.
func markCleared(m *Rule, gate uint32, chains map[chainKey][]*Rule) bool {
	for _, r := range chains[chainKey{m.Tool, m.Family, m.Table, m.Chain}] {
		if r == m {
			return false
		}
		if r.SetMark != nil && r.SetMark.clears(gate) {
			return true
		}
	}
	return false
}

// hasUDPChecksumFix: ea64d8d6c675 "netfilter: nat: never update the UDP
// checksum when it's 0" (5.7; stable 4.14.181, 4.19.123, 5.4.41).
// Distribution releases that do not carry the stable patch level in
// uname -r count as without it.
func hasUDPChecksumFix(k incident.KernelVersion) bool {
	switch {
	case k.AtLeast(5, 7):
		return true
	case k[0] == 5 && k[1] == 4:
		return k[2] >= 41
	case k[0] == 4 && k[1] == 19:
		return k[2] >= 123
	case k[0] == 4 && k[1] == 14:
		return k[2] >= 181
	}
	return false
}

// tunnelDoubleSNAT: a masquerade on a mark that is not cleared also
// matches the encapsulated packet, which leaves a tunnel device in the same
// skb with the mark (docs/kernel-notes.md, The VXLAN double-SNAT fault).
func tunnelDoubleSNAT(m *Rule, gate uint32, tunnels []string, k incident.KernelVersion) Finding {
	f := Finding{
		ID:       incident.FindingTunnelDoubleSNAT,
		Summary:  fmt.Sprintf("masquerade on mark %#x without clearing it: a packet encapsulated by a tunnel device keeps the mark and is masqueraded again (the kube-proxy rule before kubernetes#92035)", gate),
		Evidence: []string{"rule: " + m.Text},
		Mitigation: "clear the mark before masquerading, as kube-proxy does since kubernetes#92035 (\"! --mark 0x4000/0x4000 -j RETURN\", \"-j MARK --xor-mark 0x4000\", then MASQUERADE); " +
			"on a kernel without ea64d8d6c675 also turn off TX checksum offload on the tunnel device",
		Severity: SeverityInfo,
	}
	switch {
	case len(tunnels) == 0:
		f.Evidence = append(f.Evidence, "no tunnel device in this namespace yet")
	case hasUDPChecksumFix(k):
		f.Severity = SeveritySettled
		f.Evidence = append(f.Evidence, "tunnel devices: "+strings.Join(tunnels, ", "),
			"this kernel has ea64d8d6c675 (5.7; stable 4.14.181, 4.19.123, 5.4.41): the second SNAT keeps a zero UDP checksum, so the receiver accepts the packet")
	default:
		f.Severity = SeverityDrops
		f.Evidence = append(f.Evidence, "tunnel devices: "+strings.Join(tunnels, ", "),
			"this kernel lacks ea64d8d6c675 (before 5.7): the second SNAT writes a UDP checksum where it was 0 and the receiver drops the packet (1 s or 63 s connection delays)")
	}
	return f
}

// randomFullyRace2: random SNAT ports on a path where one socket sends two
// packets at once: each packet's entry gets its own random port, so their
// REPLY tuples differ and they cannot merge (race 2 whatever the
// same-origin rule; reply-only insert from 5.6, dropped before). The path
// is one that pods' DNS takes: the masquerade is unconditional, or its mark
// is set by a rule that does not exclude pod sources (kube-proxy
// --masquerade-all).
func randomFullyRace2(m *Rule, gate uint32, gateRule *Rule, rules []Rule, chains map[chainKey][]*Rule, k incident.KernelVersion) (Finding, bool) {
	ev := []string{"rule: " + m.Text}
	switch {
	case gate == 0 && m.Src != "":
		return Finding{}, false
	case gate != 0:
		setter := markSetter(gate, rules, chains)
		if setter == nil {
			return Finding{}, false
		}
		if gateRule != m {
			ev = append(ev, "gated by: "+gateRule.Text)
		}
		ev = append(ev, "mark set for every source by: "+setter.Text)
	}
	ev = append(ev, "a resolver on this node sends A and AAAA at once from one socket (resolver-parallel-queries)")
	f := Finding{
		ID:       incident.FindingRandomFullyRace2,
		Summary:  "random source ports for packets that one socket sends at once: each gets its own port, so they cannot merge (race 2)",
		Evidence: ev,
		Mitigation: "kernel ≥ 5.6 inserts the loser reply-only (6a757c07e51f); before, keep DNS off this masquerade " +
			"(NodeLocal DNSCache, no --masquerade-all) or send A and AAAA one after the other (glibc `options single-request`, or `use-vc`)",
	}
	f.predict(k, incident.Path{Proto: 17, NAT: true, PortsMove: true}, incident.RaceNATPort)
	return f, true
}

// markSetter finds a UDP rule that sets the gate bits for packets from any
// source: a MARK rule in a base chain, or a jump to a chain that sets
// them (KUBE-MARK-MASQ), whose own matches then decide whom it marks.
// (A jump from a chain that is itself reached by jumps is taken to run.)
func markSetter(gate uint32, rules []Rule, chains map[chainKey][]*Rule) *Rule {
	setsIn := func(k chainKey) bool {
		for _, r := range chains[k] {
			if r.SetMark != nil && r.SetMark.sets(gate) {
				return true
			}
		}
		return false
	}
	for i := range rules {
		r := &rules[i]
		if r.Src != "" || !r.udp() {
			continue
		}
		if r.SetMark != nil && r.SetMark.sets(gate) && r.Base {
			return r
		}
		for _, j := range r.Jumps {
			if setsIn(chainKey{r.Tool, r.Family, r.Table, j}) {
				return r
			}
		}
	}
	return nil
}

// tableFill: the table near nf_conntrack_max; at the limit new flows are
// dropped ("nf_conntrack: table full, dropping packet").
func tableFill(c *Conntrack, fill float64) Finding {
	ev := []string{
		fmt.Sprintf("nf_conntrack_count %d of nf_conntrack_max %d (%.0f%%, threshold %.0f%%)", c.Count, c.Max, 100*float64(c.Count)/float64(c.Max), 100*fill),
		fmt.Sprintf("nf_conntrack_udp_timeout %d s, _stream %d s", c.UDPTimeout, c.UDPStreamTimeout),
	}
	if c.Buckets > 0 {
		ev = append(ev, fmt.Sprintf("nf_conntrack_buckets %d: %.1f entries per bucket chain", c.Buckets, float64(c.Count)/float64(c.Buckets)))
	}
	ev = append(ev, fmt.Sprintf("early_drop %d, drop %d so far", c.EarlyDrop, c.Counters["drop"]))
	return Finding{
		ID:         incident.FindingConntrackTableFill,
		Severity:   SeverityDrops,
		Summary:    "the conntrack table is nearly full: at nf_conntrack_max new flows are dropped",
		Evidence:   ev,
		Mitigation: "raise nf_conntrack_max (and nf_conntrack_buckets), or shorten nf_conntrack_udp_timeout and _stream so that DNS entries leave sooner",
	}
}

// resolverFinding: a resolver that sends A and AAAA at once from one
// socket races itself at conntrack (race 1), and where its nameserver is
// DNAT'd to several endpoints, race 3.
func (n *node) resolverFinding(r Resolver, k incident.KernelVersion) Finding {
	f := Finding{
		ID:      incident.FindingResolverParallelQueries,
		Summary: fmt.Sprintf("%s (pid %d) sends A and AAAA at once from one UDP socket", r.Comm, r.PID),
		Evidence: []string{
			fmt.Sprintf("pid %d (%s) and %d more: %s (%s)", r.PID, r.Comm, r.Processes-1, r.Libc, r.Interp),
			r.Why,
			"resolv.conf: nameserver " + strings.Join(r.ResolvConf.Nameservers, ", ") + optionsText(r.ResolvConf),
		},
	}
	if r.Libc == LibcMusl {
		f.Mitigation = "musl has no option against it: NodeLocal DNSCache (no DNAT between pod and resolver), or a kernel ≥ 5.6, which settles race 3"
	} else {
		f.Mitigation = "`options single-request` (A, then AAAA) or `options use-vc` (TCP) in the pod's resolv.conf (Kubernetes: dnsConfig.options), or NodeLocal DNSCache"
	}
	if !n.conntrack {
		f.Evidence = append(f.Evidence, "conntrack is not loaded on this node: no entry, no race")
		f.Severity = SeverityInfo
		return f
	}
	races := []incident.RaceType{incident.RaceIdentical}
	nat := n.nat
	for _, a := range r.ResolvConf.Nameservers {
		addr, err := netip.ParseAddr(a)
		if err != nil {
			continue
		}
		if s := n.serviceFor(addr); s != nil {
			nat = true
			f.Evidence = append(f.Evidence, fmt.Sprintf("%s port 53 is DNAT'd to %d endpoint(s) in %s (rule: %s)", a, len(s.endpoints), s.netns, s.rule))
			if len(s.endpoints) > 1 && !slices.Contains(races, incident.RaceEndpoints) {
				races = append(races, incident.RaceEndpoints)
			}
		}
	}
	f.predict(k, incident.Path{Proto: 17, NAT: nat}, races...)
	if nat {
		// Where another entry holds the socket's port towards the server
		// (the pod also sends to the endpoint directly, or another flow
		// took the port), the SRC binding moves each packet's port apart.
		// Added after predict: a conditional race leaves the severity.
		f.Races = append(f.Races, Prediction{Race: incident.RaceNATPort,
			Outcome: incident.RaceNATPort.EndsOn(k, incident.Path{Proto: 17, NAT: true, PortsMove: true}),
			When:    portHeld})
	}
	return f
}

// portHeld is the condition of race 2 without random ports.
const portHeld = "another entry holds the socket's source port towards the server"

func optionsText(rc *ResolvConf) string {
	if len(rc.Options) == 0 {
		return ""
	}
	return "; options " + strings.Join(rc.Options, " ")
}
