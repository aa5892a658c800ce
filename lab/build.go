package lab

// Building a topology: namespaces, links, routes and rules, and the check
// that a lookup gets through before the run starts.

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/ctprobe/ctprobe/internal/ipt"

	"github.com/ctprobe/ctprobe/tracer/dnsmsg"
)

func (t *Topology) build(ctx context.Context) error {
	sc := t.Scenario
	fam := sc.Family
	start := time.Now()

	// 1. Namespaces.
	roles := []string{"node"}
	if sc.overlay {
		roles = append(roles, "node2")
	}
	if sc.Path == PathForwarded {
		roles = append(roles, "pod")
		if sc.sequential() {
			roles = append(roles, "pod2")
		}
	}
	for i := 1; i <= t.endpoints; i++ {
		roles = append(roles, fmt.Sprintf("dns%d", i))
	}
	if sc.prefill > 0 {
		roles = append(roles, "fill")
	}
	for _, r := range roles {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := t.addNetns(r); err != nil {
			return err
		}
	}

	// 2. Sysctls, before any link exists: new IPv6 devices copy
	// conf/default, and with DAD off their addresses are usable at once
	// (no 1-2 s "tentative" wait).
	for _, ns := range t.Namespaces {
		list := []sysctl{
			{key: "net/ipv6/conf/all/accept_dad", value: "0", optional: true},
			{key: "net/ipv6/conf/default/accept_dad", value: "0", optional: true},
		}
		if strings.HasPrefix(ns.Role, "node") {
			list = append(list,
				sysctl{key: "net/ipv4/ip_forward", value: "1"},
				// New netns copy init_net's IPv4 conf; a host with strict
				// reverse-path filtering must not drop the lab's routed flows.
				sysctl{key: "net/ipv4/conf/all/rp_filter", value: "0"},
				sysctl{key: "net/ipv4/conf/default/rp_filter", value: "0"},
			)
			if fam == 6 {
				list = append(list, sysctl{key: "net/ipv6/conf/all/forwarding", value: "1"})
			}
		}
		if err := writeSysctls(ns, list); err != nil {
			return err
		}
	}

	// 3. Links, addresses, routes: one `ip -batch` per netns. The node's
	// batch creates the veth pairs with the peer end already in the other
	// netns, so it runs first.
	batches := t.linkPlan()
	order := []string{"node"}
	if sc.overlay {
		order = append(order, "node2")
	}
	for _, ns := range t.Namespaces {
		if !strings.HasPrefix(ns.Role, "node") {
			order = append(order, ns.Role)
		}
	}
	for _, role := range order {
		lines := batches[role]
		if len(lines) == 0 {
			continue
		}
		if err := run(ctx, t.byRole[role], strings.Join(lines, "\n")+"\n", t.IPBin, "-batch", "-"); err != nil {
			return fmt.Errorf("setting up links: %w", err)
		}
	}

	// 4. Rules in the node.
	if err := t.installRules(ctx); err != nil {
		return err
	}

	// 4b. The UDP timeouts, now that the rules have loaded conntrack (its
	// sysctls exist only then) and before the check's flows; and the hash
	// table's size.
	if err := t.setUDPTimeout(); err != nil {
		return err
	}
	if n := sc.hashBuckets; n > 0 {
		if err := t.setHashBuckets(n); err != nil {
			return err
		}
	}

	// 5. DNS responders.
	for i := 1; i <= t.endpoints; i++ {
		r, err := startResponder(t.byRole[fmt.Sprintf("dns%d", i)], i)
		if err != nil {
			return err
		}
		t.responders = append(t.responders, r)
	}

	// 6. Client threads, and the conntrack flusher race 4 needs.
	cpu0, cpu1 := racingCPUs()
	for i, role := range t.clientRoles() {
		cpu := cpu0
		if i == 1 {
			cpu = cpu1
		}
		if t.Scenario.sequential() {
			cpu = -1 // no race to provoke
		}
		s, err := startSender(t.byRole[role], cpu, t.Options.Comm)
		if err != nil {
			return err
		}
		t.senders = append(t.senders, s)
	}
	if sc.sequential() {
		f, err := newCtnetlink(t.byRole["node"])
		if err != nil {
			return err
		}
		t.flusher = f
	}

	// 7. Check the paths end to end before reporting ready, which also
	// resolves ARP/ND so that the first lookups are not queued behind it;
	// then fill the hash table or leave the table the room the scenario
	// asks for.
	if err := t.check(ctx); err != nil {
		return err
	}
	if n := sc.prefill; n > 0 {
		if err := t.prefill(n); err != nil {
			return err
		}
	}
	if n := sc.tableRoom; n > 0 {
		if err := t.limitTable(n); err != nil {
			return err
		}
	}
	t.logf("topology %s (%s) ready in %v", t.Prefix, sc.Name, time.Since(start).Round(time.Millisecond))
	return nil
}

// prefill makes n entries in the fill netns, which live through the run.
func (t *Topology) prefill(n int) error {
	f, err := newCtnetlink(t.byRole["fill"])
	if err != nil {
		return err
	}
	defer f.Close()
	refused, err := f.Fill(n, 10*time.Minute)
	if err != nil {
		return err
	}
	t.logf("prefilled %d conntrack entries (%d refused) in %s", n-refused, refused, t.byRole["fill"].Name)
	return nil
}

// setUDPTimeout writes Options.UDPTimeout, if set, to both UDP timeouts of
// every netns: a flow that got a reply lives the _stream timeout on older
// kernels, and the topology check's flows do.
func (t *Topology) setUDPTimeout() error {
	if t.Options.UDPTimeout == 0 {
		return nil
	}
	secs := strconv.Itoa(int(t.Options.UDPTimeout / time.Second))
	for _, ns := range t.Namespaces {
		err := writeSysctls(ns, []sysctl{
			{key: "net/netfilter/nf_conntrack_udp_timeout", value: secs},
			{key: "net/netfilter/nf_conntrack_udp_timeout_stream", value: secs},
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// linkPlan returns the `ip -batch` lines for each netns role.
//
// Addressing: every node-side veth carries the gateway address of its
// peer's subnet as a /32 (10.244.1.1 towards pods, 10.244.2.254 towards DNS
// pods; fe80::1 for IPv6) plus a /32 (/128) route to the peer, as Calico-like
// CNIs do; so no bridge module is needed and many peers share one subnet.
func (t *Topology) linkPlan() map[string][]string {
	sc := t.Scenario
	fam := sc.Family
	b := map[string][]string{}
	add := func(role string, lines ...string) { b[role] = append(b[role], lines...) }
	for _, ns := range t.Namespaces {
		add(ns.Role, "link set lo up")
	}
	// vethTo links a router netns to a leaf netns (whose end is eth0).
	vethTo := func(router, dev, leaf string, leafAddr, gw4 netip.Addr, plen int) {
		peer := t.byRole[leaf].Name
		add(router, fmt.Sprintf("link add %s type veth peer name eth0 netns %s", dev, peer))
		if fam == 6 {
			add(router,
				fmt.Sprintf("addr add %s/64 dev %s nodad", gwLinkLocal6, dev),
				fmt.Sprintf("link set %s up", dev),
				fmt.Sprintf("route add %s/128 dev %s", leafAddr, dev))
			add(leaf,
				fmt.Sprintf("addr add %s/64 dev eth0 nodad", leafAddr),
				"link set eth0 up",
				fmt.Sprintf("route add ::/0 via %s dev eth0", gwLinkLocal6))
			return
		}
		add(router,
			fmt.Sprintf("addr add %s/32 dev %s", gw4, dev),
			fmt.Sprintf("link set %s up", dev),
			fmt.Sprintf("route add %s/32 dev %s", leafAddr, dev))
		add(leaf,
			fmt.Sprintf("addr add %s/%d dev eth0", leafAddr, plen),
			"link set eth0 up",
			fmt.Sprintf("route add default via %s dev eth0", gw4))
	}
	if sc.Path == PathForwarded {
		vethTo("node", "pod1", "pod", podAddr(fam, 1), nodePodAddr4, 24)
		if sc.sequential() {
			vethTo("node", "pod2", "pod2", podAddr(fam, 2), nodePodAddr4, 24)
		}
	}
	dnsRouter := "node"
	if sc.overlay {
		// node1 <-> node2 underlay, and a VXLAN overlay on top (flannel
		// style: pod subnets routed through the vxlan device).
		dnsRouter = "node2"
		n2 := t.byRole["node2"].Name
		add("node",
			"link add under0 type veth peer name under0 netns "+n2,
			"addr add 192.168.100.1/24 dev under0",
			"link set under0 up",
			"link add vx0 type vxlan id 42 local 192.168.100.1 remote 192.168.100.2 dstport 4789 dev under0",
			"addr add 10.244.255.1/24 dev vx0",
			"link set vx0 up",
			"route add 10.244.2.0/24 via 10.244.255.2 dev vx0")
		add("node2",
			"addr add 192.168.100.2/24 dev under0",
			"link set under0 up",
			"link add vx0 type vxlan id 42 local 192.168.100.2 remote 192.168.100.1 dstport 4789 dev under0",
			"addr add 10.244.255.2/24 dev vx0",
			"link set vx0 up",
			"route add 10.244.1.0/24 via 10.244.255.1 dev vx0")
	}
	for i := 1; i <= t.endpoints; i++ {
		vethTo(dnsRouter, fmt.Sprintf("dns%d", i), fmt.Sprintf("dns%d", i), dnsAddr(fam, i), nodeDNSAddr4, 24)
	}
	if sc.Path == PathLocal {
		// A socket in the node needs a route to the ClusterIP before OUTPUT
		// DNAT can rewrite it (a real node has a default route for that);
		// the reroute after DNAT then picks the endpoint's veth. The source
		// is the node's DNS-side address, inside the cluster CIDR, so
		// kube-proxy does not mark it for masquerade.
		add("node", fmt.Sprintf("route add %s dev dns1 src %s", serviceNet4, nodeDNSAddr4))
	}
	return b
}

func (t *Topology) service() Service {
	sc := t.Scenario
	ip, cidr := ClusterIP4, clusterCIDR4
	if sc.Family == 6 {
		ip, cidr = ClusterIP6, clusterCIDR6
	}
	eps := make([]netip.Addr, t.endpoints)
	for i := range eps {
		eps[i] = dnsAddr(sc.Family, i+1)
	}
	s := DNSService(ip, cidr, eps)
	s.MasqueradeAll = sc.masqueradeAll
	s.LegacyPostrouting = sc.legacyPostrouting
	return s
}

func (t *Topology) installRules(ctx context.Context) error {
	node := t.byRole["node"]
	sc := t.Scenario
	svc := t.service()
	switch sc.nat {
	case natService:
		t.Target = netip.AddrPortFrom(svc.ClusterIP, svc.Port)
	default:
		t.Target = netip.AddrPortFrom(dnsAddr(sc.Family, 1), 53)
	}
	if t.Options.NAT == "nft" {
		var text string
		switch sc.nat {
		case natService:
			text = NftRuleset(svc, nftTable)
		case natNone:
			text = CtStateNewNft(nftTable)
		case natSNATOnePort:
			text = SNATOnePortNft("dns1", SNATTarget, nftTable)
		case natMasqRandomFully:
			text = MasqueradeRandomFullyNft("dns1", nftTable)
		case natNullBinding:
			text = NullBindingNft(nftTable)
		}
		if err := run(ctx, node, text, t.RuleBin, "-f", "-"); err != nil {
			return fmt.Errorf("installing nft rules: %w%s", err, moduleHint(err))
		}
		return nil
	}
	table := "nat"
	var lines []string
	switch sc.nat {
	case natService:
		lines = KubeProxyRules(svc)
	case natNone:
		table, lines = "filter", CtStateNewRules()
	case natSNATOnePort:
		lines = SNATOnePortRules("dns1", SNATTarget)
	case natMasqRandomFully:
		lines = MasqueradeRandomFullyRules("dns1")
	case natNullBinding:
		lines = NullBindingRules()
	}
	for _, line := range lines {
		args, err := ipt.Split(line)
		if err != nil {
			return err
		}
		// -w: the xtables lock is global across namespaces; wait for it
		// rather than fail when another iptables runs.
		args = append([]string{"-w", "5", "-t", table}, args...)
		if err := run(ctx, node, "", t.RuleBin, args...); err != nil {
			return fmt.Errorf("installing kube-proxy rules: %w%s", err, moduleHint(err))
		}
	}
	return nil
}

// moduleHint explains a rule tool's failure when it looks like a missing
// kernel module (a VM whose /init loaded too few), and is empty otherwise.
func moduleHint(err error) string {
	msg := err.Error()
	for _, sign := range []string{
		"No chain/target/match", "Couldn't load", "not found", "Protocol not supported",
		"Operation not supported", "does not exist", "Could not process rule", "No such file or directory",
	} {
		if strings.Contains(msg, sign) {
			return " (the kernel may lack a netfilter module: load nf_nat, iptable_nat / ip6table_nat / iptable_filter, " +
				"xt_nat, xt_MASQUERADE, xt_statistic, xt_comment, xt_mark, xt_tcpudp, xt_conntrack; for nft: nf_tables, nft_nat, nft_numgen, nft_masq, nft_ct, nft_chain_nat)"
		}
	}
	return ""
}

// check sends one query from the first client to every endpoint directly and
// one to the target, each with a few tries, so that a broken topology fails
// Setup with a clear message instead of showing up as lost lookups.
func (t *Topology) check(ctx context.Context) error {
	fam := t.Scenario.Family
	var targets []netip.AddrPort
	for i := 1; i <= t.endpoints; i++ {
		targets = append(targets, netip.AddrPortFrom(dnsAddr(fam, i), 53))
	}
	targets = append(targets, t.Target)
	for si, s := range t.senders {
		if si > 0 && !t.Scenario.sequential() {
			break // both threads are in the same netns
		}
		for _, target := range targets {
			ok := false
			for try := 0; try < 4 && !ok; try++ {
				if err := ctx.Err(); err != nil {
					return err
				}
				if t.flusher != nil {
					// Race 4: a previous check flow holds the one SNAT port.
					if err := t.flusher.Flush(); err != nil {
						return err
					}
				}
				var err error
				ok, err = t.queryOnce(s, target, dnsmsg.TypeA, 500*time.Millisecond)
				if err != nil {
					return err
				}
			}
			if !ok {
				return fmt.Errorf("topology check: no DNS reply from %s to a query from netns %s (inspect with --keep and `ip -n NAME route`, `iptables -t nat -S`)", target, s.ns.Name)
			}
		}
	}
	if t.flusher != nil {
		return t.flusher.Flush()
	}
	return nil
}

// queryOnce sends one query from a new socket of s to target and waits.
func (t *Topology) queryOnce(s *sender, target netip.AddrPort, qtype uint16, wait time.Duration) (bool, error) {
	var cs *clientSocket
	if err := s.do(func() (err error) { cs, err = newClientSocket(target); return }); err != nil {
		return false, err
	}
	defer cs.Close()
	id := randID()
	q, err := dnsmsg.BuildQuery(id, t.Options.Name, qtype)
	if err != nil {
		return false, err
	}
	if _, err := writeFd(cs.fd, q); err != nil {
		return false, nil // e.g. ENETUNREACH while routes settle: retry
	}
	got := awaitReplies(cs.fd, map[uint16]uint16{id: qtype}, time.Now().Add(wait))
	return len(got) == 1, nil
}
