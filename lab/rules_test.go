package lab

import (
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ctprobe/ctprobe/internal/ipt"
)

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

// kube-dns:dns over UDP and kube-dns:dns-tcp hash to these chains in every
// real cluster.
func TestSvcChainIsKubeProxys(t *testing.T) {
	s := DNSService(ClusterIP4, clusterCIDR4, nil)
	if got := s.SvcChain(DNSPort); got != "KUBE-SVC-TCOU7JCQXEZGVUNU" {
		t.Errorf("SvcChain(dns) = %s", got)
	}
	if got := s.SvcChain(DNSTCPPort); got != "KUBE-SVC-ERIFXISQEP7F7OF4" {
		t.Errorf("SvcChain(dns-tcp) = %s", got)
	}
}

func TestKubeProxyRulesTwoEndpoints(t *testing.T) {
	s := DNSService(ClusterIP4, clusterCIDR4, addrs("10.244.2.1", "10.244.2.2"))
	s.Ports = []ServicePort{DNSPort}
	want := []string{
		"-N KUBE-SERVICES",
		"-N KUBE-POSTROUTING",
		"-N KUBE-MARK-MASQ",
		"-N KUBE-SVC-TCOU7JCQXEZGVUNU",
		"-N KUBE-SEP-3JL6EXUC63QUOQWO",
		"-N KUBE-SEP-TCIZBYBD3WWXNWF5",
		`-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`,
		`-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`,
		`-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING`,
		"-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000",
		"-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
		"-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000",
		`-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully`,
		`-A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m comment --comment "kube-system/kube-dns:dns cluster IP" -m udp --dport 53 -j KUBE-SVC-TCOU7JCQXEZGVUNU`,
		`-A KUBE-SVC-TCOU7JCQXEZGVUNU ! -s 10.244.0.0/16 -d 10.96.0.10/32 -p udp -m comment --comment "kube-system/kube-dns:dns cluster IP" -m udp --dport 53 -j KUBE-MARK-MASQ`,
		`-A KUBE-SVC-TCOU7JCQXEZGVUNU -m comment --comment "kube-system/kube-dns:dns -> 10.244.2.1:53" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-3JL6EXUC63QUOQWO`,
		`-A KUBE-SVC-TCOU7JCQXEZGVUNU -m comment --comment "kube-system/kube-dns:dns -> 10.244.2.2:53" -j KUBE-SEP-TCIZBYBD3WWXNWF5`,
		`-A KUBE-SEP-3JL6EXUC63QUOQWO -s 10.244.2.1/32 -m comment --comment "kube-system/kube-dns:dns" -j KUBE-MARK-MASQ`,
		`-A KUBE-SEP-3JL6EXUC63QUOQWO -p udp -m comment --comment "kube-system/kube-dns:dns" -m udp -j DNAT --to-destination 10.244.2.1:53`,
		`-A KUBE-SEP-TCIZBYBD3WWXNWF5 -s 10.244.2.2/32 -m comment --comment "kube-system/kube-dns:dns" -j KUBE-MARK-MASQ`,
		`-A KUBE-SEP-TCIZBYBD3WWXNWF5 -p udp -m comment --comment "kube-system/kube-dns:dns" -m udp -j DNAT --to-destination 10.244.2.2:53`,
	}
	got := KubeProxyRules(s)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("rules differ:\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
}

// dns-tcp gets the same rules as dns with tcp for udp, in chains of its
// own, and its jump from KUBE-SERVICES comes after dns's: a UDP packet meets
// no TCP rule.
func TestKubeProxyRulesTCPPort(t *testing.T) {
	s := DNSService(ClusterIP4, clusterCIDR4, addrs("10.244.2.1", "10.244.2.2"))
	udpOnly := s
	udpOnly.Ports = []ServicePort{DNSPort}
	got, udp := KubeProxyRules(s), KubeProxyRules(udpOnly)
	var tcp []string
	for _, line := range got {
		if !slices.Contains(udp, line) {
			tcp = append(tcp, line)
		}
	}
	if len(got) != 2*len(udp)-10 || len(tcp) != len(udp)-10 {
		t.Fatalf("%d rules with dns-tcp, %d without: want the 10 shared ones once\n%s", len(got), len(udp), strings.Join(got, "\n"))
	}
	svc, sep1 := s.SvcChain(DNSTCPPort), s.SepChain(DNSTCPPort, s.Endpoints[0])
	for _, want := range []string{
		"-N " + svc,
		`-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment "kube-system/kube-dns:dns-tcp cluster IP" -m tcp --dport 53 -j ` + svc,
		`-A ` + svc + ` ! -s 10.244.0.0/16 -d 10.96.0.10/32 -p tcp -m comment --comment "kube-system/kube-dns:dns-tcp cluster IP" -m tcp --dport 53 -j KUBE-MARK-MASQ`,
		`-A ` + sep1 + ` -p tcp -m comment --comment "kube-system/kube-dns:dns-tcp" -m tcp -j DNAT --to-destination 10.244.2.1:53`,
	} {
		if !slices.Contains(tcp, want) {
			t.Errorf("missing %q in\n%s", want, strings.Join(tcp, "\n"))
		}
	}
	var jumps []string
	for _, line := range got {
		if strings.HasPrefix(line, "-A KUBE-SERVICES ") {
			jumps = append(jumps, line)
		}
	}
	if len(jumps) != 2 || !strings.Contains(jumps[0], "-p udp") || !strings.Contains(jumps[1], "-p tcp") {
		t.Errorf("KUBE-SERVICES: %q; want dns's jump, then dns-tcp's", jumps)
	}
}

// Probabilities 1/(n-i): 1/3, 1/2, then an unconditional jump; one endpoint
// gets no statistic match at all.
func TestKubeProxyProbabilities(t *testing.T) {
	for _, tc := range []struct {
		eps  []string
		want []string
	}{
		{[]string{"10.244.2.1"}, []string{""}},
		{[]string{"10.244.2.1", "10.244.2.2"}, []string{"0.5000000000", ""}},
		{[]string{"10.244.2.1", "10.244.2.2", "10.244.2.3"}, []string{"0.3333333333", "0.5000000000", ""}},
		{[]string{"10.244.2.1", "10.244.2.2", "10.244.2.3", "10.244.2.4"}, []string{"0.2500000000", "0.3333333333", "0.5000000000", ""}},
	} {
		s := DNSService(ClusterIP4, clusterCIDR4, addrs(tc.eps...))
		var got []string
		for _, line := range KubeProxyRules(s) {
			if !strings.HasPrefix(line, "-A "+s.SvcChain(DNSPort)+" -m comment") {
				continue
			}
			p := ""
			if i := strings.Index(line, "--probability "); i >= 0 {
				p = strings.Fields(line[i:])[1]
			}
			if !strings.HasSuffix(line, "-j "+s.SepChain(DNSPort, s.Endpoints[len(got)])) {
				t.Errorf("jump %d goes elsewhere: %s", len(got), line)
			}
			got = append(got, p)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%d endpoints: probabilities %q, want %q", len(tc.eps), got, tc.want)
		}
	}
}

func TestKubeProxyRulesIPv6(t *testing.T) {
	s := DNSService(ClusterIP6, clusterCIDR6, addrs("fd00:244:2::1", "fd00:244:2::2"))
	got := strings.Join(KubeProxyRules(s), "\n")
	for _, want := range []string{
		`-A KUBE-SERVICES -d fd00:96::10/128 -p udp -m comment --comment "kube-system/kube-dns:dns cluster IP" -m udp --dport 53 -j KUBE-SVC-TCOU7JCQXEZGVUNU`,
		`! -s fd00:244::/32 -d fd00:96::10/128`,
		`--comment "kube-system/kube-dns:dns -> [fd00:244:2::1]:53" -m statistic --mode random --probability 0.5000000000`,
		`-s fd00:244:2::2/128 -m comment --comment "kube-system/kube-dns:dns" -j KUBE-MARK-MASQ`,
		`-j DNAT --to-destination [fd00:244:2::2]:53`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
}

// The seed's pre-1.19 rules: MASQUERADE on the mark, which it never clears.
func TestKubeProxyRulesLegacyMasqueradeAll(t *testing.T) {
	s := DNSService(ClusterIP4, clusterCIDR4, addrs("10.244.2.1"))
	s.MasqueradeAll, s.LegacyPostrouting = true, true
	got := KubeProxyRules(s)
	joined := strings.Join(got, "\n")
	for _, want := range []string{
		"-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
		`-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -m mark --mark 0x4000/0x4000 -j MASQUERADE --random-fully`,
		`-A KUBE-SVC-TCOU7JCQXEZGVUNU -d 10.96.0.10/32 -p udp -m comment --comment "kube-system/kube-dns:dns cluster IP" -m udp --dport 53 -j KUBE-MARK-MASQ`,
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("missing %q", want)
		}
	}
	for _, bad := range []string{"--xor-mark", "-j RETURN", "! -s"} {
		if strings.Contains(joined, bad) {
			t.Errorf("legacy rules contain %q", bad)
		}
	}
}

func TestNftRuleset(t *testing.T) {
	s := DNSService(ClusterIP4, clusterCIDR4, addrs("10.244.2.1", "10.244.2.2"))
	want := `table ip ctlab {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip saddr != 10.244.0.0/16 ip daddr 10.96.0.10 udp dport 53 meta mark set meta mark | 0x4000
		ip daddr 10.96.0.10 udp dport 53 dnat to numgen random mod 2 map { 0 : 10.244.2.1, 1 : 10.244.2.2 }
		ip saddr != 10.244.0.0/16 ip daddr 10.96.0.10 tcp dport 53 meta mark set meta mark | 0x4000
		ip daddr 10.96.0.10 tcp dport 53 dnat to numgen random mod 2 map { 0 : 10.244.2.1, 1 : 10.244.2.2 }
	}
	chain output {
		type nat hook output priority -100; policy accept;
		ip saddr != 10.244.0.0/16 ip daddr 10.96.0.10 udp dport 53 meta mark set meta mark | 0x4000
		ip daddr 10.96.0.10 udp dport 53 dnat to numgen random mod 2 map { 0 : 10.244.2.1, 1 : 10.244.2.2 }
		ip saddr != 10.244.0.0/16 ip daddr 10.96.0.10 tcp dport 53 meta mark set meta mark | 0x4000
		ip daddr 10.96.0.10 tcp dport 53 dnat to numgen random mod 2 map { 0 : 10.244.2.1, 1 : 10.244.2.2 }
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		meta mark & 0x4000 != 0x4000 return
		meta mark set meta mark ^ 0x4000
		masquerade fully-random
	}
}
`
	if got := NftRuleset(s, "ctlab"); got != want {
		t.Fatalf("ruleset:\n%s\nwant:\n%s", got, want)
	}

	s6 := DNSService(ClusterIP6, clusterCIDR6, addrs("fd00:244:2::1", "fd00:244:2::2", "fd00:244:2::3"))
	got6 := NftRuleset(s6, "ctlab")
	for _, w := range []string{
		"table ip6 ctlab {",
		"ip6 daddr fd00:96::10 udp dport 53 dnat to numgen random mod 3 map { 0 : fd00:244:2::1, 1 : fd00:244:2::2, 2 : fd00:244:2::3 }",
		"ip6 saddr != fd00:244::/32 ip6 daddr fd00:96::10",
	} {
		if !strings.Contains(got6, w) {
			t.Errorf("IPv6 ruleset lacks %q:\n%s", w, got6)
		}
	}
}

func TestRace4AndNoNATRules(t *testing.T) {
	if got, want := SNATOnePortRules("dns1", SNATTarget), []string{
		`-A POSTROUTING -o dns1 -p udp -m comment --comment "ctlab: all clients to one source port (race 4)" -j SNAT --to-source 10.244.2.254:40000`,
	}; !reflect.DeepEqual(got, want) {
		t.Errorf("SNAT rules %q", got)
	}
	if got := SNATOnePortNft("dns1", SNATTarget, "ctlab"); !strings.Contains(got, "\t\toifname \"dns1\" meta l4proto udp snat to 10.244.2.254:40000\n") ||
		!strings.Contains(got, "type nat hook postrouting priority srcnat") {
		t.Errorf("SNAT nft:\n%s", got)
	}
	if got := CtStateNewRules(); len(got) != 1 || !strings.HasPrefix(got[0], "-A FORWARD -m conntrack --ctstate NEW ") || strings.Contains(got[0], " -j ") {
		t.Errorf("ct state rule %q", got)
	}
	if got := CtStateNewNft("ctlab"); !strings.Contains(got, "type filter hook forward priority filter;") || !strings.Contains(got, "ct state new counter") {
		t.Errorf("ct state nft:\n%s", got)
	}
}

func TestSplitRule(t *testing.T) {
	got, err := ipt.Split(`-A X -m comment --comment "a b -> c:53" -j Y`)
	want := []string{"-A", "X", "-m", "comment", "--comment", "a b -> c:53", "-j", "Y"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, %v", got, err)
	}
	if got, _ := ipt.Split(`--comment ""`); !reflect.DeepEqual(got, []string{"--comment", ""}) {
		t.Errorf("empty quoted arg: %q", got)
	}
	if _, err := ipt.Split(`-m comment --comment "open`); err == nil {
		t.Error("unbalanced quote accepted")
	}
	// Every generated line must split back into clean arguments.
	s := DNSService(ClusterIP4, clusterCIDR4, addrs("10.244.2.1", "10.244.2.2"))
	for _, line := range KubeProxyRules(s) {
		args, err := ipt.Split(line)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range args {
			if strings.Contains(a, `"`) {
				t.Errorf("quote left in argument %q of %s", a, line)
			}
		}
	}
}

// The race-2 masquerade asks for random ports; the null-binding rule never
// matches a lab address.
func TestMasqueradeAndNullBindingRules(t *testing.T) {
	r := MasqueradeRandomFullyRules("dns1")
	if args, err := ipt.Split(r[0]); err != nil || args[len(args)-2] != "MASQUERADE" || args[len(args)-1] != "--random-fully" || !strings.Contains(r[0], "-o dns1 ") {
		t.Errorf("masquerade rule %q (%v)", r, err)
	}
	if got := MasqueradeRandomFullyNft("dns1", "ctlab"); !strings.Contains(got, "oifname \"dns1\" meta l4proto udp masquerade fully-random") {
		t.Errorf("masquerade nft:\n%s", got)
	}
	n := NullBindingRules()
	if len(n) != 1 || !strings.Contains(n[0], "-s 192.0.2.1/32 ") || !strings.HasSuffix(n[0], "-j MASQUERADE") {
		t.Errorf("null binding rule %q", n)
	}
	if got := NullBindingNft("ctlab"); !strings.Contains(got, "ip saddr 192.0.2.1 masquerade") || !strings.Contains(got, "type nat hook postrouting") {
		t.Errorf("null binding nft:\n%s", got)
	}
}
