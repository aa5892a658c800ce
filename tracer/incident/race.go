package incident

import (
	"fmt"
	"strconv"

	"github.com/ctprobe/ctprobe/tracer/event"
)

// RaceType numbers the races as the Weave write-up does, plus two more
// (docs/kernel-notes.md, The race types).
type RaceType int

const (
	RaceUnknown   RaceType = 0 // evidence incomplete; Incident.Reason says what is missing
	RaceIdentical RaceType = 1 // identical tuples, both unconfirmed, same endpoint
	RaceNATPort   RaceType = 2 // the loser's reply tuple (source port) was changed by NAT
	RaceEndpoints RaceType = 3 // DNAT chose different endpoints
	RaceSNATPort  RaceType = 4 // reply-tuple clash between different flows (SNAT port collision)
	RaceReverse   RaceType = 5 // reverse collision: both peers sent at once
)

// Race is one row of the race table: what the race is, how each kernel
// era settles it, and what removes it. Classify decides which race an
// incident is; everything else that is said about a race comes from here.
type Race struct {
	Type RaceType
	// Name is the race in a few words ("DNAT chose different endpoints").
	Name string
	// Settled says how the kernel settles the race, by era.
	Settled string
	// Mitigation says what removes or settles the race, given how the
	// kernel ended this clash and what NAT did, with the kernel change it
	// rests on (docs/kernel-notes.md, Mitigations and what each rests on).
	Mitigation func(Facts) string
	// Findings are the ids of the `ctprobe doctor` findings that predict
	// this race (docs/doctor.md), so that a trace's summary can name them.
	Findings []string
}

// The ids of `ctprobe doctor`'s findings (docs/doctor.md). Those that
// predict a race are named in its row's Findings; the trace reports
// tunnel-double-snat itself (incident.Finding).
const (
	FindingSNATPortCollision       = "snat-port-collision"
	FindingDNATUDPMultiEndpoint    = "dnat-udp-multi-endpoint"
	FindingRandomFullyRace2        = "random-fully-race2"
	FindingTunnelDoubleSNAT        = "tunnel-double-snat"
	FindingConntrackTableFill      = "conntrack-table-fill"
	FindingResolverParallelQueries = "resolver-parallel-queries"
)

// Facts are what a mitigation depends on besides the race.
type Facts struct {
	Outcome Outcome
	Proto   uint8 // IPPROTO_*
	// RandomPorts: NAT gave the loser a random source port: its binding
	// shows a rule with random ports (--random-fully), or NAT gave the two
	// packets of one socket different ports (the rule randomises them, or
	// the port was held by another flow): get_unique_tuple did not keep it.
	RandomPorts bool
}

func fixed(text string) func(Facts) string { return func(Facts) string { return text } }

// noClash: the protocol is known and has no clash resolution.
func (f Facts) noClash() bool { return f.Proto != 0 && !allowsClash(f.Proto) }

// Mitigation texts shared by rows (docs/kernel-notes.md, Mitigations and what each rests on).
const (
	mitigationUnknown      = "none known: the evidence was incomplete (see each incident's reason; lost records make this likelier)"
	mitigationMerge        = "kernel ≥ 4.19 merges identical entries (ed07d9a021df \"netfilter: nf_conntrack: resolve clash for matching conntracks\")"
	mitigationNoClash      = "none in the kernel: %s conntrack has no clash resolution (allow_clash is set for UDP and UDPLITE; GRE from 6.5; ICMP from 7.x), so every clash of it is dropped; send such packets one after the other"
	mitigationSameOrigin   = "kernel ≥ 5.0, or 4.19.y with 4e35c1cb9460 (\"netfilter: nf_nat: skip nat clash resolution for same-origin entries\"), keeps the source port so the entries merge, unless the rule randomises ports (--random-fully); kernel ≥ 5.6 inserts the loser reply-only either way (6a757c07e51f)"
	mitigationApartSettled = "nothing was lost: kernel ≥ 5.6 inserts the loser reply-only (6a757c07e51f). The peer saw one socket's packets from two source ports, because the rule randomises ports " +
		"(--random-fully) and get_unique_tuple then never keeps the source port; a peer that keys state on the source port (QUIC, WireGuard, UDP hole punching) needs a rule without --random-fully for that traffic"
	mitigationNATSettled   = "nothing was lost: this kernel settled it (merged, or inserted reply-only: 6a757c07e51f, 5.6+); the peer may have seen one socket's packets from two sources"
	mitigationApartDropped = "kernel ≥ 5.6 inserts the loser reply-only (6a757c07e51f \"netfilter: conntrack: allow insertion of clashing entries\"); " +
		"before, drop --random-fully from the rule for this traffic where SNAT port collisions (race 4) are rare, so that the same-origin rule (4e35c1cb9460, 5.0+) keeps the port and the entries merge"
	mitigationEndpoints = "kernel ≥ 5.6 inserts the loser reply-only (6a757c07e51f \"netfilter: conntrack: allow insertion of clashing entries\"); " +
		"or NodeLocal DNSCache (no DNAT between pod and resolver); " +
		"or glibc `options single-request-reopen` or `single-request` (glibc's send_dg then sends AAAA only after A's answer, -reopen from a new socket) / `options use-vc` (TCP); musl (Alpine) ignores all three"
	mitigationSNATPort = "a wider SNAT port range, or more SNAT addresses; `--random-fully` (NF_NAT_RANGE_PROTO_RANDOM_FULLY) makes collisions between clients rarer, " +
		"but it also gives the packets of one socket that race different ports (race 2: inserted reply-only on 5.6+, dropped before); no kernel settles it"
	mitigationReverseMerge = "kernel ≥ 6.12 merges reverse collisions (a4e6a1031e77 \"netfilter: conntrack: add clash resolution for reverse collisions\"; before, only where neither entry has NAT)"
	mitigationReverseMoved = "kernel ≥ 6.12 keeps the port of a UDP reverse collision when neither entry is NATed (d8f84a9bc7c4) and merges it (a4e6a1031e77); " +
		"%s NAT moves the port on every kernel. Where the peer must see the port (UDP hole punching, WireGuard, QUIC), exempt the flow from conntrack (raw table NOTRACK) or create its entry before both peers send"
	mitigationReverseNoClash = "none in the kernel: %s conntrack has no clash resolution (allow_clash), which nf_ct_resolve_clash checks before 6.12's reverse merge, so the later of the two packets is dropped on every kernel and resent (a TCP SYN after 1 s); exempt the flow from conntrack (raw table NOTRACK) if both peers open it at once by design"
)

// Races is the race table, indexed by RaceType.
var Races = [...]Race{
	RaceUnknown: {RaceUnknown, "unclassified", "", fixed(mitigationUnknown), nil},
	RaceIdentical: {RaceIdentical, "identical tuples", "merged into the winner (4.19+)", func(f Facts) string {
		if f.noClash() {
			return fmt.Sprintf(mitigationNoClash, event.ProtoName(f.Proto))
		}
		return mitigationMerge
	}, []string{FindingResolverParallelQueries}},
	RaceNATPort: {RaceNATPort, "NAT moved the source port",
		"same-origin rule (5.0+) keeps the port, so it becomes 1 or 3; with random ports (--random-fully) inserted reply-only (5.6+), dropped before",
		func(f Facts) string {
			switch {
			case f.noClash():
				return fmt.Sprintf(mitigationNoClash, event.ProtoName(f.Proto))
			case f.RandomPorts && f.Outcome.Settled():
				return mitigationApartSettled
			case f.Outcome.Settled():
				return mitigationNATSettled
			case f.RandomPorts:
				return mitigationApartDropped
			}
			return mitigationSameOrigin
		}, []string{FindingRandomFullyRace2, FindingResolverParallelQueries}},
	RaceEndpoints: {RaceEndpoints, "DNAT chose different endpoints", "inserted reply-only, `IPS_NAT_CLASH` (5.6+); dropped before", func(f Facts) string {
		if f.noClash() {
			return fmt.Sprintf(mitigationNoClash, event.ProtoName(f.Proto))
		}
		return mitigationEndpoints
	}, []string{FindingDNATUDPMultiEndpoint, FindingResolverParallelQueries}},
	RaceSNATPort: {RaceSNATPort, "SNAT port collision (reply tuple taken)", "dropped on every kernel", fixed(mitigationSNATPort),
		[]string{FindingSNATPortCollision}},
	RaceReverse: {RaceReverse, "reverse collision",
		"UDP: merged (6.12+, or without NAT); before 6.12 NAT moves the port instead; TCP: dropped, or its port moved where NAT is loaded",
		func(f Facts) string {
			switch {
			case (f.Outcome == OutcomePortMoved || f.Outcome == OutcomeNATClash) && !f.noClash():
				return fmt.Sprintf(mitigationReverseMoved, "for TCP and other protocols without clash resolution,")
			case f.Outcome == OutcomePortMoved:
				return fmt.Sprintf(mitigationReverseMoved, "for "+event.ProtoName(f.Proto)+", like every protocol without clash resolution,")
			case f.noClash():
				return fmt.Sprintf(mitigationReverseNoClash, event.ProtoName(f.Proto))
			}
			return mitigationReverseMerge
		}, nil},
}

// Race returns the table row of r; a number the table does not know (from
// a newer capture) gets a row that names it.
func (r RaceType) Race() Race {
	if r >= 0 && int(r) < len(Races) {
		return Races[r]
	}
	return Race{Type: r, Name: "race " + strconv.Itoa(int(r)), Mitigation: fixed(mitigationUnknown)}
}

// Name is the human name of the race ("DNAT chose different endpoints").
func (r RaceType) Name() string { return r.Race().Name }

// Mitigation is what removes or settles race r given facts f.
func (r RaceType) Mitigation(f Facts) string { return r.Race().Mitigation(f) }

// DropMitigation applies to dropped DNS queries of any race.
const DropMitigation = "use TCP for DNS (`options use-vc`), or NodeLocal DNSCache, so that no UDP query races through DNAT"

// Outcome is how the kernel settled the clash.
type Outcome string

const (
	OutcomeMerged   Outcome = "merged"    // the loser's packet now rides on the winner's ct
	OutcomeNATClash Outcome = "nat-clash" // the loser was inserted in the reply direction only (5.6+)
	OutcomeDropped  Outcome = "dropped"   // __nf_conntrack_confirm returned NF_DROP
	// OutcomePortMoved: no clash reached confirm, because the loser's SRC
	// NAT binding found its reply tuple held by the winner and moved its
	// source port (race 5 before 6.12: docs/kernel-notes.md, The race
	// types). The packet went on from another port; no counter moved.
	OutcomePortMoved Outcome = "port-moved"
	// OutcomeUnknown is reported when the loser's confirm was never seen
	// (its record was lost) but nf_ct_resolve_clash proved a clash happened.
	OutcomeUnknown Outcome = "unknown"
)

// Settled says that the kernel let the packet through after a clash at
// confirm (the clash counts in clash_resolve from 5.10 on).
func (o Outcome) Settled() bool { return o == OutcomeMerged || o == OutcomeNATClash }

// Counted says that the kernel counted the clash (clash_resolve, or
// insert_failed): it reached __nf_conntrack_confirm's clash path.
func (o Outcome) Counted() bool { return o != OutcomePortMoved }

// Order is the outcome's place in tables: merged, nat-clash, dropped,
// port-moved, then the rest.
func (o Outcome) Order() int {
	switch o {
	case OutcomeMerged:
		return 0
	case OutcomeNATClash:
		return 1
	case OutcomeDropped:
		return 2
	case OutcomePortMoved:
		return 3
	}
	return 4
}
