// Package lab builds Kubernetes-like topologies in network namespaces (veth
// links, NAT rules written the way kube-proxy writes them), sends DNS lookups
// the way glibc and musl do (A and AAAA at once from one socket) and reports
// what the kernel's conntrack counters did in every namespace it created.
//
// It provokes the conntrack insertion races of the "DNS lookups take 5
// seconds" bug (docs/kernel-notes.md: The race types, Provoking the races): races 1 and 3 through
// DNAT to one or more random endpoints, and race 4 (a reply-tuple clash)
// deterministically through SNAT to a single port.
//
// Everything needs root. Namespaces are named ctl<pid>-<n>-<role>, so runs
// never collide and leftovers of dead runs can be found (Cleanup).
package lab

import (
	"fmt"
	"strings"
	"time"
)

// Client placement.
const (
	// PathForwarded: the client is a pod; its packets reach the node's
	// PREROUTING (DNAT there, in softirq).
	PathForwarded = "forwarded"
	// PathLocal: the client is a socket in the node netns; DNAT happens in
	// OUTPUT, in the sending task's context.
	PathLocal = "local"
)

type natKind int

const (
	natService         natKind = iota // kube-proxy ClusterIP DNAT
	natNone                           // no NAT; a ct state new rule keeps conntrack on
	natSNATOnePort                    // node SNAT to one ip:port (race 4)
	natMasqRandomFully                // node MASQUERADE --random-fully towards the DNS pod
	natNullBinding                    // a NAT table whose rule never matches: null bindings only
)

// lookupKind is what one lookup of a scenario does.
type lookupKind int

const (
	// lookupRacing: A and AAAA at the same instant from two threads on one
	// socket, as glibc and musl send them.
	lookupRacing lookupKind = iota
	// lookupSequential: two pods query one after the other, the table
	// flushed before (race 4).
	lookupSequential
	// lookupSingle: one query from a new socket.
	lookupSingle
	// lookupReverse: two peers (pod, dns1) send to each other at the same
	// instant from fresh ports (race 5).
	lookupReverse
)

// Scenario is one lab experiment.
type Scenario struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Expect says what the kernel should show, in words.
	Expect string `json:"expect"`
	// Endpoints is the default number of DNS endpoints.
	Endpoints int `json:"endpoints"`
	// FixedEndpoints: Options.Endpoints may not change the count.
	FixedEndpoints bool   `json:"fixed_endpoints"`
	Family         int    `json:"family"` // 4 or 6
	Path           string `json:"path"`   // PathForwarded or PathLocal

	nat    natKind
	lookup lookupKind
	// proto of lookupReverse: 17 (UDP datagrams) or 6 (TCP simultaneous
	// open).
	proto uint8
	// hold: in lookupSequential, how long the first pod's entry lives
	// before the second pod's query collides with it.
	hold time.Duration
	// overlay: the endpoints sit behind a second node reached over VXLAN.
	overlay           bool
	masqueradeAll     bool
	legacyPostrouting bool
	// Global conntrack settings for the run (one per host: Topology's
	// globals restore them): tableRoom lowers nf_conntrack_max to the
	// node's entries plus this many once the topology is checked;
	// hashBuckets sets the hash table's size.
	tableRoom   int
	hashBuckets int
	// prefill: entries made through ctnetlink in a netns of their own
	// ("fill") before the run, so that the shared hash table's chains are
	// long before any traced packet passes.
	prefill int
}

// sequential: one query per client, one client after the other (race 4).
func (s *Scenario) sequential() bool { return s.lookup == lookupSequential }

var scenarios = []Scenario{
	{
		Name:           "endpoints-1",
		Description:    "pod -> ClusterIP DNAT to one endpoint; A and AAAA race on one socket",
		Expect:         "race 1 (identical tuples): clash_resolve > 0 in the node, merged, no lost replies on 4.19+",
		Endpoints:      1,
		FixedEndpoints: true,
		Family:         4, Path: PathForwarded, nat: natService,
	},
	{
		Name:        "endpoints-2",
		Description: "pod -> ClusterIP DNAT to two random endpoints (statistic random); A and AAAA race",
		Expect:      "race 1 + race 3: clash_resolve > 0 in the node (merge or reply-only insert), no lost replies on 5.6+",
		Endpoints:   2,
		Family:      4, Path: PathForwarded, nat: natService,
	},
	{
		Name:           "nonat",
		Description:    "pod -> DNS pod directly through the node, no NAT; a ct state new rule keeps conntrack on",
		Expect:         "race 1 without NAT: clash_resolve > 0 in the node, no lost replies",
		Endpoints:      1,
		FixedEndpoints: true,
		Family:         4, Path: PathForwarded, nat: natNone,
	},
	{
		Name:        "ipv6",
		Description: "endpoints-2 over IPv6 (ip6tables / nft ip6): pod -> [fd00:96::10]:53",
		Expect:      "races 1 + 3 over IPv6: clash_resolve > 0 in the node, no lost replies on 5.6+",
		Endpoints:   2,
		Family:      6, Path: PathForwarded, nat: natService,
	},
	{
		Name:        "local",
		Description: "a socket in the node netns -> ClusterIP: OUTPUT DNAT in the sender's context",
		Expect:      "races 1 + 3 at LOCAL_OUT: clash_resolve > 0 in the node, no lost replies on 5.6+",
		Endpoints:   2,
		Family:      4, Path: PathLocal, nat: natService,
	},
	{
		Name:           "snat-one-port",
		Description:    "two pods query one DNS pod in turn through a node SNAT to 10.244.2.254:40000 (a one-port range)",
		Expect:         "race 4, deterministic: the second pod's query is dropped at confirm every lookup: insert_failed and drop +1 per lookup on every kernel",
		Endpoints:      1,
		FixedEndpoints: true,
		Family:         4, Path: PathForwarded, nat: natSNATOnePort, lookup: lookupSequential,
	},
	{
		Name:           "snat-one-port-held",
		Description:    "snat-one-port, with the second pod's query 1.5 s after the first pod's answer: the entry it collides with is not a racer but an older flow",
		Expect:         "race 4 against an entry confirmed 1.5 s before: dropped at confirm every lookup, insert_failed and drop +1 per lookup",
		Endpoints:      1,
		FixedEndpoints: true,
		Family:         4, Path: PathForwarded, nat: natSNATOnePort, lookup: lookupSequential, hold: 1500 * time.Millisecond,
	},
	{
		Name:        "vxlan-masq",
		Description: "pod -> ClusterIP on node1, endpoints on node2 across VXLAN; pre-1.19 kube-proxy masquerade (--masquerade-all, --random-fully) keeps the mark, so the encapsulated packet is masqueraded again",
		Expect:      "double SNAT (seed vxlan-double-snat): clashes resolved in node1; lost replies would be the old checksum bug",
		Endpoints:   2,
		Family:      4, Path: PathForwarded, nat: natService,
		overlay: true, masqueradeAll: true, legacyPostrouting: true,
	},
	{
		Name:        "vxlan-masq-fixed",
		Description: "vxlan-masq with kube-proxy 1.19+'s KUBE-POSTROUTING (kubernetes#92035): the mark is cleared before MASQUERADE, so the encapsulated packet is not masqueraded again",
		Expect:      "no double SNAT: the VXLAN packet keeps its source port (no tunnel-double-snat finding); clashes resolved in node1",
		Endpoints:   2,
		Family:      4, Path: PathForwarded, nat: natService,
		overlay: true, masqueradeAll: true,
	},
	{
		Name:           "masq-random-fully",
		Description:    "pod -> DNS pod through a node that masquerades it with MASQUERADE --random-fully (as kube-proxy and many CNIs do); A and AAAA race on one socket",
		Expect:         "race 2 with ports apart: one socket's two packets get different source ports, so they cannot merge; inserted reply-only on 5.6+ (clash_resolve), dropped before",
		Endpoints:      1,
		FixedEndpoints: true,
		Family:         4, Path: PathForwarded, nat: natMasqRandomFully,
	},
	{
		Name:           "reverse-udp",
		Description:    "two peers (pod, dns1) send each other a UDP datagram at the same instant, from fresh ports, through a node with a NAT table loaded (null bindings)",
		Expect:         "race 5: merged on 6.12+ (clash_resolve); before, dropped (insert_failed, drop) or the later packet's source port moved by its null binding (seen by the other peer; no counter)",
		Endpoints:      1,
		FixedEndpoints: true,
		Family:         4, Path: PathForwarded, nat: natNullBinding, lookup: lookupReverse, proto: 17,
	},
	{
		Name:           "reverse-tcp",
		Description:    "two peers (pod, dns1) open a TCP connection to each other at the same instant (simultaneous open), from fresh ports, through a node without NAT",
		Expect:         "race 5 dropped on every kernel: TCP has no clash resolution (insert_failed, drop); the SYN is resent",
		Endpoints:      1,
		FixedEndpoints: true,
		Family:         4, Path: PathForwarded, nat: natNone, lookup: lookupReverse, proto: 6,
	},
	{
		Name:           "table-full",
		Description:    "pod -> DNS pod through the node, one query per lookup from a new socket, with nf_conntrack_max lowered to the node's entries + 16 (a global setting, restored when the topology is removed)",
		Expect:         "after 16 lookups the table is full: nf_conntrack_in drops each new flow's packet (drop +1, insert_failed +0) unless early_drop evicts an unassured entry",
		Endpoints:      1,
		FixedEndpoints: true,
		Family:         4, Path: PathForwarded, nat: natNone, lookup: lookupSingle, tableRoom: 16,
	},
	{
		Name:           "chain-too-long",
		Description:    "pod -> DNS pod through the node with the conntrack hash table at its smallest, 512 buckets (a global setting, restored when the topology is removed), its chains already long with 18000 entries made in a netns of their own; made for ctlab flood",
		Expect:         "5.15+: a hash chain past the random limit (50 to 79 nodes since 6.3 and its stable backports) makes confirm refuse the insert: chaintoolong and insert_failed +1, the packet dropped",
		Endpoints:      1,
		FixedEndpoints: true,
		Family:         4, Path: PathForwarded, nat: natNone, hashBuckets: 512, prefill: 18000,
	},
}

// Scenarios returns every scenario, in a stable order.
func Scenarios() []Scenario {
	out := make([]Scenario, len(scenarios))
	copy(out, scenarios)
	return out
}

// ScenarioByName finds a scenario.
func ScenarioByName(name string) (Scenario, error) {
	for _, s := range scenarios {
		if s.Name == name {
			return s, nil
		}
	}
	names := make([]string, len(scenarios))
	for i, s := range scenarios {
		names[i] = s.Name
	}
	return Scenario{}, fmt.Errorf("unknown scenario %q (one of: %s)", name, strings.Join(names, ", "))
}
