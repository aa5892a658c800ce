package render

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/incident"
)

// NetnsCounters is how much the kernel's own conntrack counters of one
// network namespace grew over a summary interval.
type NetnsCounters struct {
	Netns uint64 // netns inode
	Name  string // how the user knows it ("ctlab", "/run/netns/x", "pid 4242"); may be empty
	// Delta is keyed by counter: "clash_resolve", "insert_failed", "drop"
	// (and any other kstat counter, printed after those three). A missing
	// key means the kernel has no such counter: clash_resolve exists from
	// 5.10 on.
	Delta map[string]uint64
}

// RaceCount is the number of incidents of one race type with one outcome.
type RaceCount struct {
	Race    incident.RaceType
	Outcome incident.Outcome
	Count   uint64
}

// ProcessCount is the number of incidents whose loser was sent by one
// process. Comm "" and PID 0 collect the losers whose sender is unknown
// (incident.Packet.Task false).
type ProcessCount struct {
	Comm  string
	PID   uint32
	Count uint64
}

// DestCount is the number of incidents whose loser's original destination
// (before DNAT) was one address and port.
type DestCount struct {
	Proto uint8
	Dst   netip.AddrPort
	Count uint64
}

// NetnsSummary is one network namespace: what ctprobe saw in it and what the
// kernel counted.
type NetnsSummary struct {
	Netns uint64
	Name  string
	// Counters is NetnsCounters.Delta; nil when they were not read.
	Counters  map[string]uint64
	Incidents uint64
	Resolved  uint64 // outcome merged or nat-clash
	Dropped   uint64 // outcome dropped
}

// Summary is what an interval (or the whole run) amounted to. Tally builds
// one; tests and replays may fill it by hand.
type Summary struct {
	Start, End    time.Time
	Final         bool // the summary printed on exit
	Incidents     uint64
	ByRace        []RaceCount    // by race, then outcome
	ByProcess     []ProcessCount // most incidents first
	ByDestination []DestCount    // most incidents first
	Netns         []NetnsSummary // by netns inode
	Lost          map[string]uint64
}

// Tally counts incidents and losses between summaries. It is safe for
// concurrent use. For a final summary over the whole run next to interval
// summaries, keep two.
type Tally struct {
	mu      sync.Mutex
	start   time.Time
	n       uint64
	byRace  map[RaceCount]uint64 // Count always 0 in the key
	byProc  map[ProcessCount]uint64
	byDst   map[DestCount]uint64
	byNetns map[uint64]*NetnsSummary
	lost    map[string]uint64
}

// NewTally starts counting at start.
func NewTally(start time.Time) *Tally {
	t := &Tally{}
	t.Reset(start)
	return t
}

// Reset forgets everything and starts a new interval at start.
func (t *Tally) Reset(start time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.start = start
	t.n = 0
	t.byRace = map[RaceCount]uint64{}
	t.byProc = map[ProcessCount]uint64{}
	t.byDst = map[DestCount]uint64{}
	t.byNetns = map[uint64]*NetnsSummary{}
	t.lost = map[string]uint64{}
}

// Add counts one incident. Process, destination and netns are the loser's.
func (t *Tally) Add(inc *incident.Incident) {
	t.mu.Lock()
	defer t.mu.Unlock()
	L := &inc.Loser
	t.n++
	t.byRace[RaceCount{Race: inc.Race, Outcome: inc.Outcome}]++
	if L.Task {
		t.byProc[ProcessCount{Comm: L.Comm, PID: L.PID}]++
	} else {
		t.byProc[ProcessCount{}]++ // sender unknown
	}
	if L.Orig.Dst.IsValid() {
		t.byDst[DestCount{Proto: L.Orig.Proto, Dst: netip.AddrPortFrom(L.Orig.Dst, L.Orig.DstPort)}]++
	}
	ns := t.byNetns[uint64(L.Netns)]
	if ns == nil {
		ns = &NetnsSummary{Netns: uint64(L.Netns)}
		t.byNetns[uint64(L.Netns)] = ns
	}
	ns.Incidents++
	switch inc.Outcome {
	case incident.OutcomeMerged, incident.OutcomeNATClash:
		ns.Resolved++
	case incident.OutcomeDropped:
		ns.Dropped++
	}
}

// AddLost counts lost records.
func (t *Tally) AddLost(l Lost) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lost[l.Source] += l.Count
}

// Summary is the interval so far, ending at end, with the kernel's counter
// deltas over the same interval. It does not reset the tally.
func (t *Tally) Summary(end time.Time, counters []NetnsCounters, final bool) *Summary {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &Summary{Start: t.start, End: end, Final: final, Incidents: t.n, Lost: maps.Clone(t.lost)}
	for k, n := range t.byRace {
		k.Count = n
		s.ByRace = append(s.ByRace, k)
	}
	slices.SortFunc(s.ByRace, func(a, b RaceCount) int {
		return cmp.Or(cmp.Compare(a.Race, b.Race), cmp.Compare(outcomeOrder(a.Outcome), outcomeOrder(b.Outcome)), cmp.Compare(a.Outcome, b.Outcome))
	})
	for k, n := range t.byProc {
		k.Count = n
		s.ByProcess = append(s.ByProcess, k)
	}
	slices.SortFunc(s.ByProcess, func(a, b ProcessCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Comm, b.Comm), cmp.Compare(a.PID, b.PID))
	})
	for k, n := range t.byDst {
		k.Count = n
		s.ByDestination = append(s.ByDestination, k)
	}
	slices.SortFunc(s.ByDestination, func(a, b DestCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), a.Dst.Compare(b.Dst), cmp.Compare(a.Proto, b.Proto))
	})
	nss := map[uint64]*NetnsSummary{}
	for k, v := range t.byNetns {
		c := *v
		nss[k] = &c
	}
	for _, c := range counters {
		ns := nss[c.Netns]
		if ns == nil {
			ns = &NetnsSummary{Netns: c.Netns}
			nss[c.Netns] = ns
		}
		ns.Name = c.Name
		ns.Counters = maps.Clone(c.Delta)
		if ns.Counters == nil {
			ns.Counters = map[string]uint64{}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(nss)) {
		s.Netns = append(s.Netns, *nss[k])
	}
	return s
}

func outcomeOrder(o incident.Outcome) int {
	switch o {
	case incident.OutcomeMerged:
		return 0
	case incident.OutcomeNATClash:
		return 1
	case incident.OutcomeDropped:
		return 2
	}
	return 3
}

// Completeness compares what ctprobe explained with what the kernel counted.

// explained is "explained E of C counter".
type explained struct {
	Explained uint64 `json:"explained"`
	Counted   uint64 `json:"counted"`
}

type completeness struct {
	// HasClashResolve is false before 5.10, where insert_failed counts
	// every clash, resolved or not, and there is no clash_resolve.
	HasClashResolve bool       `json:"has_clash_resolve"`
	ClashResolve    *explained `json:"clash_resolve"`
	InsertFailed    explained  `json:"insert_failed"`
}

// completeness of one netns: what ctprobe explained of its counters.
func (n *NetnsSummary) completeness() completeness {
	_, hasCR := n.Counters["clash_resolve"]
	return completenessOf(n.Resolved, n.Dropped, n.Counters, hasCR)
}

func completenessOf(resolved, dropped uint64, counters map[string]uint64, hasCR bool) completeness {
	c := completeness{HasClashResolve: hasCR}
	if hasCR {
		c.ClashResolve = &explained{Explained: resolved, Counted: counters["clash_resolve"]}
		c.InsertFailed = explained{Explained: dropped, Counted: counters["insert_failed"]}
	} else {
		c.InsertFailed = explained{Explained: resolved + dropped, Counted: counters["insert_failed"]}
	}
	return c
}

// totals sums the namespaces whose counters were read.
type totals struct {
	NetnsWithCounters int    `json:"netns_with_counters"`
	Incidents         uint64 `json:"incidents"`
	Resolved          uint64 `json:"resolved"`
	Dropped           uint64 `json:"dropped"`
	// Uncounted is the number of incidents in namespaces whose counters
	// were not read (not part of the comparison).
	Uncounted    uint64            `json:"uncounted"`
	Counters     map[string]uint64 `json:"counters"`
	Completeness *completeness     `json:"completeness"`
}

func totalsOf(s *Summary) totals {
	t := totals{Counters: map[string]uint64{}}
	hasCR := true
	for i := range s.Netns {
		n := &s.Netns[i]
		if n.Counters == nil {
			t.Uncounted += n.Incidents
			continue
		}
		t.NetnsWithCounters++
		t.Incidents += n.Incidents
		t.Resolved += n.Resolved
		t.Dropped += n.Dropped
		for k, v := range n.Counters {
			t.Counters[k] += v
		}
		if _, ok := n.Counters["clash_resolve"]; !ok {
			hasCR = false
		}
	}
	if t.NetnsWithCounters > 0 {
		c := completenessOf(t.Resolved, t.Dropped, t.Counters, hasCR)
		t.Completeness = &c
	}
	return t
}

// Mitigations.

// Mitigation says what removes or settles a race type.
func Mitigation(r incident.RaceType) string {
	switch r {
	case incident.RaceIdentical:
		return "kernel ≥ 4.19 merges identical entries (ed07d9a021df \"netfilter: nf_conntrack: resolve clash for matching conntracks\")"
	case incident.RaceNATPort:
		return "kernel ≥ 5.0, or 4.19.y with 4e35c1cb9460 (\"netfilter: nf_nat: skip nat clash resolution for same-origin entries\"), keeps the source port so the entries merge"
	case incident.RaceEndpoints:
		return "kernel ≥ 5.6 inserts the loser reply-only (6a757c07e51f \"netfilter: conntrack: allow insertion of clashing entries\"); " +
			"or NodeLocal DNSCache (no DNAT between pod and resolver); " +
			"or glibc `options single-request-reopen` (A and AAAA from different sockets) / `options use-vc` (TCP); musl (Alpine) ignores both"
	case incident.RaceSNATPort:
		return "`--random-fully` on the MASQUERADE/SNAT rule (NF_NAT_RANGE_PROTO_RANDOM_FULLY), a wider SNAT port range, or more SNAT addresses; no kernel settles it"
	case incident.RaceReverse:
		return "kernel ≥ 6.12 merges reverse collisions (a4e6a1031e77 \"netfilter: conntrack: add clash resolution for reverse collisions\")"
	case incident.RaceUnknown:
		return "none known: the evidence was incomplete (see each incident's reason; lost records make this likelier)"
	}
	return ""
}

// DropMitigation applies to dropped packets of any race.
const DropMitigation = "use TCP for DNS (`options use-vc`), or NodeLocal DNSCache, so that no UDP query races through DNAT"

type mitigation struct {
	Race      *int   `json:"race"`
	RaceName  string `json:"race_name,omitempty"`
	Outcome   string `json:"outcome,omitempty"`
	Incidents uint64 `json:"incidents"`
	Dropped   uint64 `json:"dropped"`
	Text      string `json:"text"`
}

func mitigationsOf(s *Summary) []mitigation {
	// Summed per race, so that rows need not come sorted (a hand-filled
	// Summary); races are printed in their order.
	type sum struct{ n, d uint64 }
	byRace := map[incident.RaceType]sum{}
	var allDropped uint64
	for _, rc := range s.ByRace {
		v := byRace[rc.Race]
		v.n += rc.Count
		if rc.Outcome == incident.OutcomeDropped {
			v.d += rc.Count
			allDropped += rc.Count
		}
		byRace[rc.Race] = v
	}
	var out []mitigation
	for _, r := range slices.Sorted(maps.Keys(byRace)) {
		ri := int(r)
		out = append(out, mitigation{Race: &ri, RaceName: RaceName(r), Incidents: byRace[r].n, Dropped: byRace[r].d, Text: Mitigation(r)})
	}
	if allDropped > 0 {
		out = append(out, mitigation{Outcome: string(incident.OutcomeDropped), Incidents: allDropped, Dropped: allDropped, Text: DropMitigation})
	}
	return out
}

// Text form.

const topN = 10

func appendSummaryText(dst []byte, s *Summary, opt *Options) []byte {
	color := opt.Color
	bold := func(dst []byte, text string) []byte { return appendColored(dst, color, ansiBold, text, 0) }

	start, end := opt.Clock.in(s.Start), opt.Clock.in(s.End)
	title := "ctprobe summary "
	if s.Final {
		title = "ctprobe summary (final) "
	}
	dst = bold(dst, "=== "+title)
	dst = start.AppendFormat(dst, "2006-01-02 15:04:05")
	dst = append(dst, " → "...)
	dst = end.AppendFormat(dst, "15:04:05")
	dst = append(dst, " ("...)
	dst = append(dst, end.Sub(start).Round(time.Millisecond).String()...)
	dst = append(dst, ") ===\n"...)

	// Incidents by race × outcome.
	dst = append(dst, "incidents: "...)
	dst = appendUint(dst, s.Incidents)
	dst = append(dst, '\n')
	if len(s.ByRace) > 0 {
		cols := []incident.Outcome{incident.OutcomeMerged, incident.OutcomeNATClash, incident.OutcomeDropped}
		for _, rc := range s.ByRace {
			if !slices.Contains(cols, rc.Outcome) {
				cols = append(cols, rc.Outcome)
			}
		}
		nameW := len("race")
		var races []incident.RaceType
		for _, rc := range s.ByRace {
			if !slices.Contains(races, rc.Race) {
				races = append(races, rc.Race)
			}
		}
		label := func(r incident.RaceType) string { return strconv.Itoa(int(r)) + " " + RaceName(r) }
		for _, r := range races {
			nameW = max(nameW, len(label(r)))
		}
		const numW = 11
		dst = append(dst, "  "...)
		dst = appendPadded(dst, "race", nameW)
		for _, c := range cols {
			name := string(c)
			if name == "" {
				name = "unknown"
			}
			dst = appendSpaces(dst, numW-len(name))
			dst = append(dst, name...)
		}
		dst = appendSpaces(dst, numW-len("total"))
		dst = append(dst, "total\n"...)
		for _, r := range races {
			dst = append(dst, "  "...)
			dst = appendPadded(dst, label(r), nameW)
			var total uint64
			for _, c := range cols {
				var n uint64
				for _, rc := range s.ByRace {
					if rc.Race == r && rc.Outcome == c {
						n = rc.Count
					}
				}
				total += n
				num := strconv.FormatUint(n, 10)
				dst = appendSpaces(dst, numW-len(num))
				if n > 0 && c == incident.OutcomeDropped {
					dst = appendColored(dst, color, ansiRed, num, 0)
				} else {
					dst = append(dst, num...)
				}
			}
			num := strconv.FormatUint(total, 10)
			dst = appendSpaces(dst, numW-len(num))
			dst = append(dst, num...)
			dst = append(dst, '\n')
		}
	}

	// By process and by destination.
	if len(s.ByProcess) > 0 {
		dst = append(dst, "by process\n"...)
		labels := make([]string, len(s.ByProcess))
		counts := make([]uint64, len(s.ByProcess))
		for i, p := range s.ByProcess {
			labels[i] = p.Comm + "[" + strconv.FormatUint(uint64(p.PID), 10) + "]"
			if p.Comm == "" && p.PID == 0 {
				labels[i] = "(sender unknown)"
			}
			counts[i] = p.Count
		}
		dst = appendCountTable(dst, labels, counts)
	}
	if len(s.ByDestination) > 0 {
		dst = append(dst, "by destination\n"...)
		labels := make([]string, len(s.ByDestination))
		counts := make([]uint64, len(s.ByDestination))
		for i, d := range s.ByDestination {
			labels[i] = event.ProtoName(d.Proto) + " " + d.Dst.String()
			counts[i] = d.Count
		}
		dst = appendCountTable(dst, labels, counts)
	}

	// Kernel counters and completeness, per netns and in total.
	nsLabel := func(n *NetnsSummary) string {
		l := "netns " + strconv.FormatUint(n.Netns, 10)
		if n.Name != "" {
			l += " (" + n.Name + ")"
		}
		return l
	}
	labelW := len("total")
	for i := range s.Netns {
		labelW = max(labelW, len(nsLabel(&s.Netns[i])))
	}
	tot := totalsOf(s)
	if len(s.Netns) > 0 {
		dst = append(dst, "kernel counters over the same interval\n"...)
		for i := range s.Netns {
			n := &s.Netns[i]
			dst = append(dst, "  "...)
			dst = appendPadded(dst, nsLabel(n), labelW)
			if n.Counters == nil {
				dst = append(dst, "  not read\n"...)
				continue
			}
			dst = appendCounters(dst, n.Counters)
			dst = append(dst, '\n')
		}
		dst = append(dst, "completeness\n"...)
		var short, over bool
		line := func(dst []byte, label string, c *completeness) []byte {
			dst = append(dst, "  "...)
			dst = appendPadded(dst, label, labelW)
			dst = append(dst, "  ctprobe explained "...)
			if c.ClashResolve != nil {
				dst = appendExplained(dst, *c.ClashResolve, "clash_resolve", color)
				dst = append(dst, ", "...)
			}
			dst = appendExplained(dst, c.InsertFailed, "insert_failed", color)
			if !c.HasClashResolve {
				dst = append(dst, " (no clash_resolve counter: before 5.10, insert_failed counts resolved clashes too)"...)
			}
			for _, e := range []*explained{c.ClashResolve, &c.InsertFailed} {
				if e != nil && e.Explained < e.Counted {
					short = true
				}
				if e != nil && e.Explained > e.Counted {
					over = true
				}
			}
			return append(dst, '\n')
		}
		for i := range s.Netns {
			n := &s.Netns[i]
			if n.Counters == nil {
				dst = append(dst, "  "...)
				dst = appendPadded(dst, nsLabel(n), labelW)
				dst = append(dst, "  "...)
				dst = appendUint(dst, n.Incidents)
				dst = append(dst, " incidents; counters not read\n"...)
				continue
			}
			c := n.completeness()
			dst = line(dst, nsLabel(n), &c)
		}
		if tot.Completeness != nil {
			dst = line(dst, "total", tot.Completeness)
		}
		if tot.Uncounted > 0 {
			dst = append(dst, "  ("...)
			dst = appendUint(dst, tot.Uncounted)
			dst = append(dst, " incidents in namespaces whose counters were not read are not in the total)\n"...)
		}
		if short {
			dst = append(dst, "  unexplained counts are lost records, traffic outside the filters, or insert failures that are not clashes (dying entry, chain too long)\n"...)
		}
		if over {
			dst = append(dst, "  more incidents than counts: counters are read at the interval edges, so an incident near an edge can fall into the neighbouring interval\n"...)
		}
	}

	// Losses.
	var lost uint64
	for _, n := range s.Lost {
		lost += n
	}
	if lost == 0 {
		dst = append(dst, "lost 0 records\n"...)
	} else {
		dst = appendColored(dst, color, ansiRed, "lost", 0)
		dst = append(dst, ' ')
		dst = appendUint(dst, lost)
		if lost == 1 {
			dst = append(dst, " record ("...)
		} else {
			dst = append(dst, " records ("...)
		}
		first := true
		for _, src := range lostOrder(s.Lost) {
			if s.Lost[src] == 0 {
				continue
			}
			if !first {
				dst = append(dst, ", "...)
			}
			first = false
			dst = append(dst, src...)
			dst = append(dst, ' ')
			dst = appendUint(dst, s.Lost[src])
		}
		dst = append(dst, "): incidents may be missing\n"...)
	}

	// Mitigations.
	if ms := mitigationsOf(s); len(ms) > 0 {
		dst = append(dst, "mitigations\n"...)
		for _, m := range ms {
			dst = append(dst, "  "...)
			if m.Race != nil {
				dst = append(dst, "race "...)
				dst = strconv.AppendInt(dst, int64(*m.Race), 10)
				dst = append(dst, " ("...)
				dst = append(dst, m.RaceName...)
				dst = append(dst, "): "...)
				dst = append(dst, m.Text...)
				if *m.Race != int(incident.RaceUnknown) {
					if m.Dropped == 0 {
						dst = append(dst, " — no drops seen: this kernel already settles it"...)
					} else {
						dst = append(dst, " — "...)
						dst = appendUint(dst, m.Dropped)
						dst = append(dst, " of "...)
						dst = appendUint(dst, m.Incidents)
						dst = append(dst, " dropped"...)
					}
				}
			} else {
				dst = append(dst, "dropped packets ("...)
				dst = appendUint(dst, m.Dropped)
				dst = append(dst, "): "...)
				dst = append(dst, m.Text...)
			}
			dst = append(dst, '\n')
		}
	}
	return append(dst, '\n')
}

func appendExplained(dst []byte, e explained, name string, color bool) []byte {
	num := strconv.FormatUint(e.Explained, 10)
	if e.Explained < e.Counted {
		dst = appendColored(dst, color, ansiYellow, num, 0)
	} else {
		dst = append(dst, num...)
	}
	dst = append(dst, " of "...)
	dst = appendUint(dst, e.Counted)
	dst = append(dst, ' ')
	return append(dst, name...)
}

// counterOrder puts the three counters that matter first, then the rest by
// name.
func counterOrder(m map[string]uint64) []string {
	keys := []string{}
	for _, k := range []string{"clash_resolve", "insert_failed", "drop"} {
		if _, ok := m[k]; ok {
			keys = append(keys, k)
		}
	}
	var rest []string
	for k := range m {
		if k != "clash_resolve" && k != "insert_failed" && k != "drop" {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	return append(keys, rest...)
}

func appendCounters(dst []byte, m map[string]uint64) []byte {
	for _, k := range counterOrder(m) {
		dst = append(dst, "  "...)
		dst = append(dst, k...)
		dst = append(dst, " +"...)
		dst = appendUint(dst, m[k])
	}
	if _, ok := m["clash_resolve"]; !ok {
		dst = append(dst, "  (no clash_resolve: kernel < 5.10)"...)
	}
	return dst
}

func lostOrder(m map[string]uint64) []string {
	out := slices.Clone(LostSources)
	var rest []string
	for k := range m {
		if !slices.Contains(out, k) {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	return append(out, rest...)
}

// appendCountTable writes up to topN "  label  count" rows, counts aligned.
func appendCountTable(dst []byte, labels []string, counts []uint64) []byte {
	n := min(len(labels), topN)
	lw, cw := 0, 0
	for i := range n {
		lw = max(lw, len(labels[i]))
		cw = max(cw, len(strconv.FormatUint(counts[i], 10)))
	}
	for i := range n {
		dst = append(dst, "  "...)
		dst = appendPadded(dst, labels[i], lw)
		num := strconv.FormatUint(counts[i], 10)
		dst = appendSpaces(dst, 2+cw-len(num))
		dst = append(dst, num...)
		dst = append(dst, '\n')
	}
	if len(labels) > n {
		var rest uint64
		for _, c := range counts[n:] {
			rest += c
		}
		dst = append(dst, "  … "...)
		dst = appendUint(dst, uint64(len(labels)-n))
		dst = append(dst, " more ("...)
		dst = appendUint(dst, rest)
		dst = append(dst, " incidents)\n"...)
	}
	return dst
}

// JSON form.

type jsonRaceCount struct {
	Race     int    `json:"race"`
	RaceName string `json:"race_name"`
	Outcome  string `json:"outcome"`
	Count    uint64 `json:"count"`
}

type jsonProcessCount struct {
	Comm  string `json:"comm"`
	PID   uint32 `json:"pid"`
	Count uint64 `json:"count"`
}

type jsonDestCount struct {
	Proto string `json:"proto"`
	Dst   string `json:"dst"`
	Count uint64 `json:"count"`
}

type jsonNetns struct {
	Netns        uint64            `json:"netns"`
	Name         string            `json:"name"`
	Counters     map[string]uint64 `json:"counters"`
	Incidents    uint64            `json:"incidents"`
	Resolved     uint64            `json:"resolved"`
	Dropped      uint64            `json:"dropped"`
	Completeness *completeness     `json:"completeness"`
}

type jsonLostTotals struct {
	Total    uint64            `json:"total"`
	BySource map[string]uint64 `json:"by_source"`
}

type jsonSummary struct {
	Schema        int                `json:"schema"`
	Kind          string             `json:"kind"`
	Final         bool               `json:"final"`
	Start         string             `json:"start"`
	End           string             `json:"end"`
	DurationS     float64            `json:"duration_s"`
	Incidents     uint64             `json:"incidents"`
	ByRace        []jsonRaceCount    `json:"by_race"`
	ByProcess     []jsonProcessCount `json:"by_process"`
	ByDestination []jsonDestCount    `json:"by_destination"`
	Netns         []jsonNetns        `json:"netns"`
	Total         totals             `json:"total"`
	Lost          jsonLostTotals     `json:"lost"`
	Mitigations   []mitigation       `json:"mitigations"`
}

func summaryJSON(s *Summary, opt *Options) jsonSummary {
	v := jsonSummary{
		Schema:        SchemaVersion,
		Kind:          "summary",
		Final:         s.Final,
		Start:         rfc3339(opt.Clock.in(s.Start)),
		End:           rfc3339(opt.Clock.in(s.End)),
		DurationS:     s.End.Sub(s.Start).Seconds(),
		Incidents:     s.Incidents,
		ByRace:        []jsonRaceCount{},
		ByProcess:     []jsonProcessCount{},
		ByDestination: []jsonDestCount{},
		Netns:         []jsonNetns{},
		Total:         totalsOf(s),
		Lost:          jsonLostTotals{BySource: map[string]uint64{}},
		Mitigations:   mitigationsOf(s),
	}
	if v.Mitigations == nil {
		v.Mitigations = []mitigation{}
	}
	for _, r := range s.ByRace {
		v.ByRace = append(v.ByRace, jsonRaceCount{Race: int(r.Race), RaceName: RaceName(r.Race), Outcome: string(r.Outcome), Count: r.Count})
	}
	for _, p := range s.ByProcess {
		v.ByProcess = append(v.ByProcess, jsonProcessCount(p))
	}
	for _, d := range s.ByDestination {
		v.ByDestination = append(v.ByDestination, jsonDestCount{Proto: event.ProtoName(d.Proto), Dst: d.Dst.String(), Count: d.Count})
	}
	for i := range s.Netns {
		n := &s.Netns[i]
		jn := jsonNetns{Netns: n.Netns, Name: n.Name, Counters: n.Counters, Incidents: n.Incidents, Resolved: n.Resolved, Dropped: n.Dropped}
		if n.Counters != nil {
			c := n.completeness()
			jn.Completeness = &c
		}
		v.Netns = append(v.Netns, jn)
	}
	for _, src := range LostSources {
		v.Lost.BySource[src] = 0
	}
	for k, n := range s.Lost {
		v.Lost.BySource[k] += n
		v.Lost.Total += n
	}
	return v
}
