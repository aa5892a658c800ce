package incident

import "strconv"

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
	// Mitigation says what removes or settles the race, with the kernel
	// change it rests on (docs/kernel-notes.md, Mitigations and what each
	// rests on).
	Mitigation string
	// Findings are the ids of the `ctprobe doctor` findings that predict
	// this race (docs/doctor.md), so that a trace's summary can name them.
	Findings []string
}

// The ids of `ctprobe doctor`'s findings (docs/doctor.md). Those that
// predict a race are named in its row's Findings.
const (
	FindingSNATPortCollision       = "snat-port-collision"
	FindingDNATUDPMultiEndpoint    = "dnat-udp-multi-endpoint"
	FindingRandomFullyRace2        = "random-fully-race2"
	FindingTunnelDoubleSNAT        = "tunnel-double-snat"
	FindingConntrackTableFill      = "conntrack-table-fill"
	FindingResolverParallelQueries = "resolver-parallel-queries"
)

// Races is the race table, indexed by RaceType.
var Races = [...]Race{
	RaceUnknown: {RaceUnknown, "unclassified", "",
		"none known: the evidence was incomplete (see each incident's reason; lost records make this likelier)", nil},
	RaceIdentical: {RaceIdentical, "identical tuples", "merged into the winner (4.19+)",
		"kernel ≥ 4.19 merges identical entries (ed07d9a021df \"netfilter: nf_conntrack: resolve clash for matching conntracks\")",
		[]string{FindingResolverParallelQueries}},
	RaceNATPort: {RaceNATPort, "NAT moved the source port", "same-origin rule (5.0+) turns it into 1 or 3",
		"kernel ≥ 5.0, or 4.19.y with 4e35c1cb9460 (\"netfilter: nf_nat: skip nat clash resolution for same-origin entries\"), keeps the source port so the entries merge",
		[]string{FindingRandomFullyRace2}},
	RaceEndpoints: {RaceEndpoints, "DNAT chose different endpoints", "inserted reply-only, `IPS_NAT_CLASH` (5.6+); dropped before",
		"kernel ≥ 5.6 inserts the loser reply-only (6a757c07e51f \"netfilter: conntrack: allow insertion of clashing entries\"); " +
			"or NodeLocal DNSCache (no DNAT between pod and resolver); " +
			"or glibc `options single-request` (A, then AAAA) / `options use-vc` (TCP); musl (Alpine) ignores both",
		[]string{FindingDNATUDPMultiEndpoint, FindingResolverParallelQueries}},
	RaceSNATPort: {RaceSNATPort, "SNAT port collision (reply tuple taken)", "dropped on every kernel",
		"`--random-fully` on the MASQUERADE/SNAT rule (NF_NAT_RANGE_PROTO_RANDOM_FULLY), a wider SNAT port range, or more SNAT addresses; no kernel settles it",
		[]string{FindingSNATPortCollision}},
	RaceReverse: {RaceReverse, "reverse collision", "merged (6.12+)",
		"kernel ≥ 6.12 merges reverse collisions (a4e6a1031e77 \"netfilter: conntrack: add clash resolution for reverse collisions\")", nil},
}

// Race returns the table row of r; a number the table does not know (from
// a newer capture) gets a row that names it.
func (r RaceType) Race() Race {
	if r >= 0 && int(r) < len(Races) {
		return Races[r]
	}
	return Race{Type: r, Name: "race " + strconv.Itoa(int(r))}
}

// Name is the human name of the race ("DNAT chose different endpoints").
func (r RaceType) Name() string { return r.Race().Name }

// DropMitigation applies to dropped packets of any race.
const DropMitigation = "use TCP for DNS (`options use-vc`), or NodeLocal DNSCache, so that no UDP query races through DNAT"

// Outcome is how the kernel settled the clash.
type Outcome string

const (
	OutcomeMerged   Outcome = "merged"    // the loser's packet now rides on the winner's ct
	OutcomeNATClash Outcome = "nat-clash" // the loser was inserted in the reply direction only (5.6+)
	OutcomeDropped  Outcome = "dropped"   // __nf_conntrack_confirm returned NF_DROP
	// OutcomeUnknown is reported when the loser's confirm was never seen
	// (its record was lost) but nf_ct_resolve_clash proved a clash happened.
	OutcomeUnknown Outcome = "unknown"
)

// Settled says that the kernel let the packet through (the clash counts in
// clash_resolve from 5.10 on).
func (o Outcome) Settled() bool { return o == OutcomeMerged || o == OutcomeNATClash }

// Order is the outcome's place in tables: merged, nat-clash, dropped, then
// the rest.
func (o Outcome) Order() int {
	switch o {
	case OutcomeMerged:
		return 0
	case OutcomeNATClash:
		return 1
	case OutcomeDropped:
		return 2
	}
	return 3
}
