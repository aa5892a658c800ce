package lab

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Service describes the ClusterIP service whose NAT rules the lab writes, the
// way kube-proxy sees it.
type Service struct {
	Namespace, Name string // kube-system, kube-dns
	// Ports are the service's ports, each with a chain of its own; all of
	// them are Port (kube-dns: dns over UDP and dns-tcp over TCP, both 53).
	Ports     []ServicePort
	ClusterIP netip.Addr
	Port      uint16
	Endpoints []netip.Addr // each listening on Port
	// ClusterCIDR is kube-proxy's --cluster-cidr: traffic to the service
	// from outside it (e.g. the node itself) is marked for masquerade.
	ClusterCIDR netip.Prefix
	// MasqueradeAll is kube-proxy's --masquerade-all: every packet to the
	// service is marked for masquerade.
	MasqueradeAll bool
	// LegacyPostrouting writes KUBE-POSTROUTING as kube-proxy did before
	// kubernetes#92035 (1.19): MASQUERADE on the mark without clearing it,
	// so a packet that is encapsulated (VXLAN) and goes through POSTROUTING
	// again still carries the mark and is masqueraded twice.
	LegacyPostrouting bool
}

// ServicePort is one port of a service: its name and protocol (udp or tcp,
// as iptables and nft spell them).
type ServicePort struct {
	Name, Protocol string
}

// The ports of kube-dns: the lookups and new-flow floods use dns, the TCP
// flood (ctlab flood --established tcp) dns-tcp.
var (
	DNSPort    = ServicePort{Name: "dns", Protocol: "udp"}
	DNSTCPPort = ServicePort{Name: "dns-tcp", Protocol: "tcp"}
)

// DNSService returns the kube-dns service of a cluster.
func DNSService(clusterIP netip.Addr, cidr netip.Prefix, endpoints []netip.Addr) Service {
	return Service{
		Namespace: "kube-system", Name: "kube-dns", Ports: []ServicePort{DNSPort, DNSTCPPort},
		ClusterIP: clusterIP, Port: 53, Endpoints: endpoints, ClusterCIDR: cidr,
	}
}

// kube-proxy's mark for "masquerade this" (--iptables-masquerade-bit=14).
const masqMark = "0x4000"

func (s *Service) portName(p ServicePort) string { return s.Namespace + "/" + s.Name + ":" + p.Name }

// portProtoHash is kube-proxy's portProtoHash / servicePortEndpointChainName
// hash: the first 16 characters of the base32 SHA-256 of the parts.
func portProtoHash(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "")))
	return base32.StdEncoding.EncodeToString(h[:])[:16]
}

// SvcChain is kube-proxy's KUBE-SVC-... chain name of a port; for kube-dns
// they are the well-known KUBE-SVC-TCOU7JCQXEZGVUNU (dns) and
// KUBE-SVC-ERIFXISQEP7F7OF4 (dns-tcp).
func (s *Service) SvcChain(p ServicePort) string {
	return "KUBE-SVC-" + portProtoHash(s.portName(p), p.Protocol)
}

// SepChain is kube-proxy's KUBE-SEP-... chain name for one endpoint of a port.
func (s *Service) SepChain(p ServicePort, ep netip.Addr) string {
	return "KUBE-SEP-" + portProtoHash(s.portName(p), p.Protocol, s.hostPort(ep))
}

func (s *Service) hostPort(ep netip.Addr) string {
	return net.JoinHostPort(ep.String(), strconv.Itoa(int(s.Port)))
}

func hostPrefix(a netip.Addr) string { return netip.PrefixFrom(a, a.BitLen()).String() }

// probability is kube-proxy's computeProbability: 1/n with ten decimals.
func probability(n int) string { return fmt.Sprintf("%0.10f", 1.0/float64(n)) }

// KubeProxyRules returns the nat-table rules kube-proxy (iptables mode) writes
// for the service, as iptables command arguments without the table option:
// first the chains to create (-N), then the rules to append (-A), in an order
// where every jump target exists before the jump.
//
// Why these rules matter for the races: PREROUTING/OUTPUT DNAT picks an
// endpoint per new conntrack entry with `statistic --mode random`, so two
// unconfirmed entries of the same flow can pick different endpoints (race 3);
// and because a nat table with a POSTROUTING chain exists, every new entry gets
// an SNAT (null) binding in nf_nat_setup_info even when MASQUERADE does not
// apply, which is where race 2 lived.
func KubeProxyRules(s Service) []string {
	chains := []string{"-N KUBE-SERVICES", "-N KUBE-POSTROUTING", "-N KUBE-MARK-MASQ"}
	r := []string{
		`-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`,
		`-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`,
		`-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING`,
	}
	if s.LegacyPostrouting {
		// kube-proxy before 1.19 (seed vxlan-double-snat, Shell 1).
		r = append(r,
			"-A KUBE-MARK-MASQ -j MARK --set-xmark "+masqMark+"/"+masqMark,
			`-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -m mark --mark `+masqMark+"/"+masqMark+" -j MASQUERADE --random-fully",
		)
	} else {
		// kube-proxy 1.19+ (kubernetes#92035): clear the mark before
		// masquerading so an encapsulated packet is not NATed again.
		r = append(r,
			"-A KUBE-MARK-MASQ -j MARK --or-mark "+masqMark,
			"-A KUBE-POSTROUTING -m mark ! --mark "+masqMark+"/"+masqMark+" -j RETURN",
			"-A KUBE-POSTROUTING -j MARK --xor-mark "+masqMark,
			`-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully`,
		)
	}
	for _, p := range s.Ports {
		c, pr := s.portRules(p)
		chains = append(chains, c...)
		r = append(r, pr...)
	}
	return append(chains, r...)
}

// portRules returns the chains (-N) and rules (-A) of one service port: its
// jump from KUBE-SERVICES, its KUBE-SVC chain that picks an endpoint and a
// KUBE-SEP chain per endpoint that DNATs to it.
func (s *Service) portRules(p ServicePort) (chains, r []string) {
	svc := s.SvcChain(p)
	chains = append(chains, "-N "+svc)
	for _, ep := range s.Endpoints {
		chains = append(chains, "-N "+s.SepChain(p, ep))
	}
	svcComment := fmt.Sprintf(`-m comment --comment "%s cluster IP"`, s.portName(p))
	dst := fmt.Sprintf("-d %s -p %s", hostPrefix(s.ClusterIP), p.Protocol)
	dport := fmt.Sprintf("-m %s --dport %d", p.Protocol, s.Port)
	r = append(r, fmt.Sprintf("-A KUBE-SERVICES %s %s %s -j %s", dst, svcComment, dport, svc))
	switch {
	case s.MasqueradeAll:
		r = append(r, fmt.Sprintf("-A %s %s %s %s -j KUBE-MARK-MASQ", svc, dst, svcComment, dport))
	case s.ClusterCIDR.IsValid():
		r = append(r, fmt.Sprintf("-A %s ! -s %s %s %s %s -j KUBE-MARK-MASQ", svc, s.ClusterCIDR, dst, svcComment, dport))
	}
	n := len(s.Endpoints)
	for i, ep := range s.Endpoints {
		line := fmt.Sprintf(`-A %s -m comment --comment "%s -> %s"`, svc, s.portName(p), s.hostPort(ep))
		if i < n-1 {
			// Endpoint i is taken with probability 1/(n-i) of what is left,
			// so each one gets 1/n overall.
			line += " -m statistic --mode random --probability " + probability(n-i)
		}
		r = append(r, line+" -j "+s.SepChain(p, ep))
	}
	for _, ep := range s.Endpoints {
		sep := s.SepChain(p, ep)
		comment := fmt.Sprintf(`-m comment --comment "%s"`, s.portName(p))
		r = append(r,
			fmt.Sprintf("-A %s -s %s %s -j KUBE-MARK-MASQ", sep, hostPrefix(ep), comment),
			fmt.Sprintf("-A %s -p %s %s -m %s -j DNAT --to-destination %s", sep, p.Protocol, comment, p.Protocol, s.hostPort(ep)),
		)
	}
	return chains, r
}

// NftRuleset returns an nftables ruleset with the same effect as
// KubeProxyRules: a `nat` table whose prerouting and output chains (priority
// dstnat) DNAT the ClusterIP's ports to `numgen random mod N map { ... }`,
// and a postrouting chain (priority srcnat) whose presence makes nf_nat add
// null SNAT bindings; it masquerades only marked packets, which the lab never
// marks unless MasqueradeAll is set.
func NftRuleset(s Service, table string) string {
	fam, ipkw := "ip", "ip"
	if s.ClusterIP.Is6() {
		fam, ipkw = "ip6", "ip6"
	}
	var m strings.Builder
	for i, ep := range s.Endpoints {
		if i > 0 {
			m.WriteString(", ")
		}
		fmt.Fprintf(&m, "%d : %s", i, ep)
	}
	var rules strings.Builder
	for _, p := range s.Ports {
		match := fmt.Sprintf("%s daddr %s %s dport %d", ipkw, s.ClusterIP, p.Protocol, s.Port)
		switch {
		case s.MasqueradeAll:
			fmt.Fprintf(&rules, "\t\t%s meta mark set meta mark | %s\n", match, masqMark)
		case s.ClusterCIDR.IsValid():
			fmt.Fprintf(&rules, "\t\t%s saddr != %s %s meta mark set meta mark | %s\n", ipkw, s.ClusterCIDR, match, masqMark)
		}
		fmt.Fprintf(&rules, "\t\t%s dnat to numgen random mod %d map { %s }\n", match, len(s.Endpoints), m.String())
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table %s %s {\n", fam, table)
	// The symbolic "dstnat" priority is only accepted for prerouting by
	// nft 1.0.x; output takes the same value (NF_IP_PRI_NAT_DST) numerically.
	for _, hook := range []struct{ name, prio string }{{"prerouting", "dstnat"}, {"output", "-100"}} {
		fmt.Fprintf(&b, "\tchain %s {\n\t\ttype nat hook %s priority %s; policy accept;\n", hook.name, hook.name, hook.prio)
		b.WriteString(rules.String())
		b.WriteString("\t}\n")
	}
	b.WriteString("\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n")
	if s.LegacyPostrouting {
		fmt.Fprintf(&b, "\t\tmeta mark & %s == %s masquerade fully-random\n", masqMark, masqMark)
	} else {
		fmt.Fprintf(&b, "\t\tmeta mark & %s != %s return\n", masqMark, masqMark)
		fmt.Fprintf(&b, "\t\tmeta mark set meta mark ^ %s\n", masqMark)
		b.WriteString("\t\tmasquerade fully-random\n")
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

// SNATOnePortRules is race 4 (docs/kernel-notes.md, Provoking the races) in iptables form: every UDP
// flow leaving through dev is source-NATed to the single address:port to, so
// the reply tuples of two different flows to the same server ip:port are
// identical and the second flow's confirm finds the first's reply tuple taken:
// insert_failed++, drop++ on every kernel.
func SNATOnePortRules(dev string, to netip.AddrPort) []string {
	return []string{
		fmt.Sprintf(`-A POSTROUTING -o %s -p udp -m comment --comment "ctlab: all clients to one source port (race 4)" -j SNAT --to-source %s`, dev, to),
	}
}

// SNATOnePortNft is SNATOnePortRules as an nftables ruleset.
func SNATOnePortNft(dev string, to netip.AddrPort, table string) string {
	fam := "ip"
	if to.Addr().Is6() {
		fam = "ip6"
	}
	return fmt.Sprintf("table %s %s {\n\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n"+
		"\t\toifname %q meta l4proto udp snat to %s\n\t}\n}\n", fam, table, dev, to)
}

// MasqueradeRandomFullyRules masquerades every UDP flow leaving through dev
// with random source ports, as kube-proxy's KUBE-POSTROUTING and many CNIs
// do: NF_NAT_RANGE_PROTO_RANDOM_FULLY makes get_unique_tuple skip keeping
// the source port, so two packets of one socket that race get different
// ports and cannot merge (race 2 with ports apart: docs/kernel-notes.md,
// The race types).
func MasqueradeRandomFullyRules(dev string) []string {
	return []string{
		fmt.Sprintf(`-A POSTROUTING -o %s -p udp -m comment --comment "ctlab: masquerade with random ports (race 2)" -j MASQUERADE --random-fully`, dev),
	}
}

// MasqueradeRandomFullyNft is MasqueradeRandomFullyRules as an nftables
// ruleset.
func MasqueradeRandomFullyNft(dev, table string) string {
	return fmt.Sprintf("table ip %s {\n\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n"+
		"\t\toifname %q meta l4proto udp masquerade fully-random\n\t}\n}\n", table, dev)
}

// NullBindingRules load a NAT table whose one rule never matches (TEST-NET-1
// as source): nf_nat then gives every new flow a null binding, whose
// get_unique_tuple moves a source port that another entry's reply holds.
// Before 6.12 that is what a reverse collision runs into (docs/kernel-notes.md,
// The race types); the kernel's conntrack_reverse_clash.sh does the same.
func NullBindingRules() []string {
	return []string{`-A POSTROUTING -s 192.0.2.1/32 -m comment --comment "ctlab: never matches; loads NAT (null bindings)" -j MASQUERADE`}
}

// NullBindingNft is NullBindingRules as an nftables ruleset.
func NullBindingNft(table string) string {
	return fmt.Sprintf("table ip %s {\n\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n"+
		"\t\tip saddr 192.0.2.1 masquerade\n\t}\n}\n", table)
}

// CtStateNewRules makes conntrack track a netns without any NAT: conntrack
// registers its hooks in a netns only once a rule needs it, so the nonat
// scenario adds a `ct state new` counter (iptables: a conntrack match without
// a target, which only counts).
func CtStateNewRules() []string {
	return []string{`-A FORWARD -m conntrack --ctstate NEW -m comment --comment "ctlab: make conntrack track this netns"`}
}

// CtStateNewNft is CtStateNewRules as an nftables ruleset.
func CtStateNewNft(table string) string {
	return fmt.Sprintf("table inet %s {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\t\tct state new counter\n\t}\n}\n", table)
}
