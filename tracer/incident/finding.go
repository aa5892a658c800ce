package incident

import (
	"fmt"
	"strings"

	"github.com/ctprobe/ctprobe/tracer/encap"
	"github.com/ctprobe/ctprobe/tracer/event"
)

// Finding is a fault ctprobe names that is not a clash between two
// entries: an entry whose insert failed without a clash, or a tunnel flow
// that NAT rewrote. Its ID is shared with `ctprobe doctor` where both name
// the same fault.
type Finding struct {
	ID   string
	Time uint64 // the entry's confirm
	// Flow is the entry: its tuples, sender, socket and netns.
	Flow Packet
	// Inner is the flow a tunnel packet carries, when its headers were
	// captured (Inner.Valid).
	Inner      encap.Flow
	Reason     string
	Mitigation string
}

// Finding ids.
const (
	// FindingChainTooLong: an insert failed at confirm without a clash and
	// the entry was not dying: a hash chain longer than the random limit
	// (5.15+), or, rarely, an extension invalidated in flight.
	FindingChainTooLong = "conntrack-chain-too-long"
	// FindingInsertDying: an insert failed at confirm because the entry was
	// killed while unconfirmed.
	FindingInsertDying = "conntrack-insert-dying"
)

// Findings of an insert that failed without a clash (docs/kernel-notes.md,
// What confirm returns, per era).
const (
	reasonChainTooLong = "the insert failed at confirm without a clash (no nf_ct_resolve_clash event) and the entry was not dying: " +
		"a hash chain longer than the kernel's random limit (50 to 79 nodes since c77737b736ce, 6.3 and stable; d7e7747ac5c2 \"netfilter: refuse insertion if chain has grown too large\", 5.15+; counted in chaintoolong), " +
		"or, rarely, a conntrack extension invalidated while the packet was in flight (nf_ct_ext_valid_pre); insert_failed +1, the packet is dropped"
	mitigationChainTooLong = "a larger hash table (nf_conntrack_buckets, or the nf_conntrack hashsize module parameter) keeps chains short; " +
		"chains also grow when many entries share one hash, which the kernel's seeded hash makes unlikely unless the table is far fuller than its buckets"
	reasonInsertDying = "the insert failed at confirm because the entry was already dying (IPS_DYING: killed while unconfirmed, by conntrack -F, a flush of its netns or zone, or a helper being removed); " +
		"insert_failed +1, the packet is dropped"
	mitigationInsertDying = "none needed unless it recurs: the entry was removed on purpose while its first packet was in flight; avoid flushing the conntrack table under live traffic"
)

// insertFailed is the finding of a loser dropped at confirm without a clash.
func insertFailed(status uint64) (id, reason, mitigation string) {
	if status&event.StatusDying != 0 {
		return FindingInsertDying, reasonInsertDying, mitigationInsertDying
	}
	return FindingChainTooLong, reasonChainTooLong, mitigationChainTooLong
}

// The UDP ports of the tunnels whose encapsulated packets may be NATed a
// second time: VXLAN (IANA 4789, Linux's and flannel's 8472) and Geneve.
const (
	portVXLAN      = 4789
	portVXLANLinux = 8472
	portGeneve     = 6081
)

// tunnelOf is the tunnel of a UDP destination port, or 0.
func tunnelOf(t *event.Tuple) encap.Kind {
	if t.Proto != 17 {
		return 0
	}
	switch t.DstPort {
	case portVXLAN, portVXLANLinux:
		return encap.VXLAN
	case portGeneve:
		return encap.Geneve
	}
	return 0
}

const mitigationTunnelSNAT = "do not masquerade the tunnel's own packets: kube-proxy ≥ 1.19 (kubernetes#92035) clears the KUBE-MARK-MASQ mark (0x4000) before MASQUERADE, " +
	"so the encapsulated copy of a masqueraded packet is not masqueraded again; or exclude the tunnel port from the SNAT rule. " +
	"Kernels without ea64d8d6c675 (\"netfilter: nat: never update the UDP checksum when it's 0\", 5.7) also break the packet's checksum under TX checksum offload: turn offload off on the tunnel device there"

// tunnelSNAT is the finding of a tunnel flow whose source NAT rewrote.
func tunnelSNAT(kind encap.Kind, orig, reply event.Tuple, inner encap.Flow, local bool) (reason string) {
	var b strings.Builder
	from := ""
	if local {
		from = " from this host"
	}
	fmt.Fprintf(&b, "%s traffic%s source-NATed: %s now leaves as %s", kind, from, event.Endpoint(orig.Src, orig.SrcPort), replyDestination(reply))
	if sourceMoved(orig, reply) {
		fmt.Fprintf(&b, " (the rule rewrote the tunnel's source port %d→%d, which the sender derives from the inner flow's hash; a rule with random ports such as MASQUERADE --random-fully rewrites it for every new inner flow)",
			orig.SrcPort, replySourcePort(reply))
	}
	if inner.Valid {
		fmt.Fprintf(&b, "; it carries %s", inner.String())
	}
	b.WriteString("; a masqueraded packet that keeps its masquerade mark is masqueraded again once encapsulated (kubernetes#88986): the double SNAT of pre-1.19 kube-proxy")
	return b.String()
}
