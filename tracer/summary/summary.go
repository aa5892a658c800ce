// Package summary adds up what a trace saw: incidents by race and outcome,
// by process, pod, destination and network namespace, losses by kind, and, per
// namespace, how much of the kernel's own counters the incidents explain.
// Renderers format a Summary; they decide nothing in it.
package summary

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/kstat"
	"github.com/ctprobe/ctprobe/tracer/loss"
	"github.com/ctprobe/ctprobe/tracer/names"
)

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
	// Node is the host the process ran on, in a summary of several nodes
	// (Merge): a pid is one node's own. "" otherwise.
	Node  string
	Comm  string
	PID   uint32
	Count uint64
}

// PodCount is the number of incidents whose loser was sent from one pod
// (incident.Packet.Names); losers of no known pod are not counted.
type PodCount struct {
	Pod   names.Pod
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
	// Node is the host the namespace is on, in a summary of several
	// nodes (Merge); "" otherwise. Inodes repeat across nodes.
	Node  string
	Netns uint64
	Name  string
	// Counters is how much the kernel's counters grew (kstat.Growth);
	// nil when they were not read. Entries and Max are the entry count at
	// the end and the table limit (nf_conntrack_max), 0 when not read.
	Counters     map[string]uint64
	Entries, Max uint64
	Incidents    uint64
	Resolved     uint64 // outcome merged or nat-clash
	Dropped      uint64 // outcome dropped
	// InsertFailures are findings of inserts that failed at confirm
	// without a clash (insert_failed +1 each); ChainTooLong are those of
	// them named chain too long.
	InsertFailures uint64
	ChainTooLong   uint64
}

// MitigationCount is the number of incidents of one race whose mitigation
// (incident.Incident.Mitigation) is one text, and how many were dropped.
type MitigationCount struct {
	Race    incident.RaceType
	Text    string
	Count   uint64
	Dropped uint64
	Moved   uint64 // outcome port-moved
	// DNSDropped: of Dropped, DNS queries (UDP to port 53), which
	// incident.DropMitigation is about.
	DNSDropped uint64
}

// Summary is what an interval (or the whole run) amounted to. Tally builds
// one; tests and replays may fill it by hand.
type Summary struct {
	Start, End time.Time
	Final      bool // the summary printed on exit
	Incidents  uint64
	ByRace     []RaceCount // by race, then outcome
	// ByMitigation is by race, then text; when empty (a hand-filled
	// Summary), Mitigations derives the texts from ByRace.
	ByMitigation  []MitigationCount
	ByProcess     []ProcessCount // most incidents first
	ByPod         []PodCount     // most incidents first
	ByDestination []DestCount    // most incidents first
	Netns         []NetnsSummary // by netns inode
	// Findings are by id, then netns.
	Findings []FindingCount
	Lost     map[loss.Kind]uint64
	// Unlisted counts the incidents left out of ByProcess, ByPod,
	// ByDestination and Netns because their breakdown already had MaxRows rows, and the
	// findings left out of Findings.
	Unlisted Unlisted
	// Nodes are the summaries of each node, in a summary of several
	// (Merge); nil otherwise.
	Nodes []NodeSummary
	// Selection says what a report selected (Tally.Selection): the counts
	// are of that, and the kernel's counters are left out unless the
	// selection is of whole namespaces. "" for everything.
	Selection string
	// CountersLeftOut: the selection leaves the kernel's counters out
	// (Tally.CountersLeftOut), as opposed to a capture without them.
	CountersLeftOut bool
}

// MaxRows bounds each breakdown of a Tally (by process, by pod, by
// destination, by netns, findings by id and netns): a trace that runs for
// weeks sees processes and pods come and go, and a row for each would grow
// its memory without end.
const MaxRows = 1000

// Unlisted are the incidents of processes, pods, destinations and network
// namespaces that came after a breakdown's first MaxRows, and the findings
// that came after Findings' first MaxRows.
type Unlisted struct {
	Processes    uint64 `json:"processes"`
	Pods         uint64 `json:"pods"`
	Destinations uint64 `json:"destinations"`
	Netns        uint64 `json:"netns"`
	Findings     uint64 `json:"findings"`
}

// FindingCount is the number of findings of one id in one netns, with the
// first of them as an example.
type FindingCount struct {
	// Node is the host of the netns, in a summary of several nodes
	// (Merge); "" otherwise.
	Node    string
	ID      string
	Netns   uint64
	Count   uint64
	Example incident.Finding
}

// LostTotal is the number of records lost, of every kind (saturated:
// loss.Add).
func (s *Summary) LostTotal() uint64 {
	var total uint64
	for _, n := range s.Lost {
		total = loss.Add(total, n)
	}
	return total
}

// Tally counts incidents and losses between summaries. It is safe for
// concurrent use. For a final summary over the whole run next to interval
// summaries, keep two.
type Tally struct {
	// Selection says what a report selected (selector.Selector.String):
	// the tally counts only that. "" for everything.
	Selection string
	// CountersLeftOut says that the selection picks part of a namespace's
	// flows, which its kernel counters cannot stand beside
	// (selector.Selector.CountersComparable).
	CountersLeftOut bool
	mu              sync.Mutex
	start           time.Time
	n               uint64
	byRace          map[RaceCount]uint64 // Count always 0 in the key
	byMit           map[mitigationKey]*MitigationCount
	byProc          map[ProcessCount]uint64
	byPod           map[names.Pod]uint64
	byDst           map[DestCount]uint64
	byNetns         map[uint64]*NetnsSummary
	byFind          map[findingKey]*FindingCount
	lost            map[loss.Kind]uint64
	unlisted        Unlisted
}

type findingKey struct {
	node, id string
	netns    uint64
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
	t.byMit = map[mitigationKey]*MitigationCount{}
	t.byProc = map[ProcessCount]uint64{}
	t.byPod = map[names.Pod]uint64{}
	t.byDst = map[DestCount]uint64{}
	t.byNetns = map[uint64]*NetnsSummary{}
	t.byFind = map[findingKey]*FindingCount{}
	t.lost = map[loss.Kind]uint64{}
	t.unlisted = Unlisted{}
}

// count adds one to key's row of m, or to *unlisted when m has MaxRows
// rows and none for key.
func count[K comparable](m map[K]uint64, key K, unlisted *uint64) {
	if _, ok := m[key]; !ok && len(m) >= MaxRows {
		*unlisted++
		return
	}
	m[key]++
}

// Add counts one incident. Process, pod, destination and netns are the
// loser's.
func (t *Tally) Add(inc *incident.Incident) {
	t.mu.Lock()
	defer t.mu.Unlock()
	L := &inc.Loser
	t.n++
	t.byRace[RaceCount{Race: inc.Race, Outcome: inc.Outcome}]++
	t.addMitigation(inc)
	if L.Task {
		count(t.byProc, ProcessCount{Comm: L.Comm, PID: L.PID}, &t.unlisted.Processes)
	} else {
		count(t.byProc, ProcessCount{}, &t.unlisted.Processes) // sender unknown
	}
	if L.Names.Pod.Known() {
		count(t.byPod, L.Names.Pod, &t.unlisted.Pods)
	}
	if L.Orig.Dst.IsValid() {
		count(t.byDst, DestCount{Proto: L.Orig.Proto, Dst: netip.AddrPortFrom(L.Orig.Dst, L.Orig.DstPort)}, &t.unlisted.Destinations)
	}
	ns := t.netns(L.Netns)
	if ns == nil {
		t.unlisted.Netns++
		return
	}
	ns.Incidents++
	switch {
	case inc.Outcome.Settled():
		ns.Resolved++
	case inc.Outcome == incident.OutcomeDropped:
		ns.Dropped++
	}
}

// netns is the row of a netns, made on first use; nil when the breakdown
// already has MaxRows rows.
func (t *Tally) netns(inode uint32) *NetnsSummary {
	ns := t.byNetns[uint64(inode)]
	if ns == nil {
		if len(t.byNetns) >= MaxRows {
			return nil
		}
		ns = &NetnsSummary{Netns: uint64(inode)}
		t.byNetns[uint64(inode)] = ns
	}
	return ns
}

// AddFinding counts one finding, in its flow's netns.
func (t *Tally) AddFinding(f *incident.Finding) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := findingKey{id: f.ID, netns: uint64(f.Flow.Netns)}
	fc := t.byFind[k]
	switch {
	case fc != nil:
	case len(t.byFind) >= MaxRows:
		t.unlisted.Findings++
	default:
		fc = &FindingCount{ID: f.ID, Netns: k.netns, Example: *f}
		fc.Example.Flow.Timeline = slices.Clone(f.Flow.Timeline)
		t.byFind[k] = fc
	}
	if fc != nil {
		fc.Count++
	}
	ns := t.netns(f.Flow.Netns)
	if ns == nil {
		return
	}
	switch f.ID {
	case incident.FindingChainTooLong:
		ns.ChainTooLong++
		fallthrough
	case incident.FindingInsertDying:
		ns.InsertFailures++
	}
}

// AddLost counts lost records.
func (t *Tally) AddLost(l loss.Count) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lost[l.Kind] = loss.Add(t.lost[l.Kind], l.Count)
}

// Summary is the interval so far, ending at end, with the growth of the
// kernel's counters over the same interval (kstat.Growth). It does not reset the tally.
func (t *Tally) Summary(end time.Time, counters []kstat.NetnsCounters, final bool) *Summary {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &Summary{Start: t.start, End: end, Final: final, Incidents: t.n, Lost: maps.Clone(t.lost), Unlisted: t.unlisted, Selection: t.Selection, CountersLeftOut: t.CountersLeftOut}
	s.setRows(t.byRace, t.byMit, t.byProc, t.byPod, t.byDst, t.byFind)
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
		ns.Entries, ns.Max = c.Entries, c.Max
		ns.Counters = maps.Clone(c.Values)
		if ns.Counters == nil {
			ns.Counters = map[string]uint64{}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(nss)) {
		s.Netns = append(s.Netns, *nss[k])
	}
	return s
}

// setRows fills the breakdowns from their counts, in their order: by race
// then outcome, mitigations by race then most incidents, findings by id
// then netns, the others most incidents first.
func (s *Summary) setRows(byRace map[RaceCount]uint64, byMit map[mitigationKey]*MitigationCount, byProc map[ProcessCount]uint64,
	byPod map[names.Pod]uint64, byDst map[DestCount]uint64, byFind map[findingKey]*FindingCount) {
	for k, n := range byRace {
		k.Count = n
		s.ByRace = append(s.ByRace, k)
	}
	slices.SortFunc(s.ByRace, func(a, b RaceCount) int {
		return cmp.Or(cmp.Compare(a.Race, b.Race), cmp.Compare(a.Outcome.Order(), b.Outcome.Order()), cmp.Compare(a.Outcome, b.Outcome))
	})
	for _, m := range byMit {
		s.ByMitigation = append(s.ByMitigation, *m)
	}
	sortMitigations(s.ByMitigation)
	for k, n := range byProc {
		k.Count = n
		s.ByProcess = append(s.ByProcess, k)
	}
	slices.SortFunc(s.ByProcess, func(a, b ProcessCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Comm, b.Comm), cmp.Compare(a.PID, b.PID), cmp.Compare(a.Node, b.Node))
	})
	for k, n := range byPod {
		s.ByPod = append(s.ByPod, PodCount{Pod: k, Count: n})
	}
	slices.SortFunc(s.ByPod, func(a, b PodCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Pod.Namespace, b.Pod.Namespace), cmp.Compare(a.Pod.Name, b.Pod.Name), cmp.Compare(a.Pod.UID, b.Pod.UID))
	})
	for k, n := range byDst {
		k.Count = n
		s.ByDestination = append(s.ByDestination, k)
	}
	slices.SortFunc(s.ByDestination, func(a, b DestCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), a.Dst.Compare(b.Dst), cmp.Compare(a.Proto, b.Proto))
	})
	for _, f := range byFind {
		s.Findings = append(s.Findings, *f)
	}
	slices.SortFunc(s.Findings, func(a, b FindingCount) int {
		return cmp.Or(cmp.Compare(a.ID, b.ID), cmp.Compare(a.Netns, b.Netns), cmp.Compare(a.Node, b.Node))
	})
}

// Completeness compares what ctprobe explained with what the kernel counted.

// Explained is "ctprobe explained E of the C the kernel counted".
type Explained struct {
	Explained uint64 `json:"explained"`
	Counted   uint64 `json:"counted"`
}

// Completeness is what ctprobe explained of one namespace's counters (or
// of their total).
type Completeness struct {
	// HasClashResolve is false before 5.10, where insert_failed counts
	// every clash, resolved or not, and there is no clash_resolve.
	HasClashResolve bool       `json:"has_clash_resolve"`
	ClashResolve    *Explained `json:"clash_resolve"`
	InsertFailed    Explained  `json:"insert_failed"`
}

// Completeness of one netns: what ctprobe explained of its counters.
func (n *NetnsSummary) Completeness() Completeness {
	_, hasCR := n.Counters["clash_resolve"]
	return completenessOf(n.Resolved, n.Dropped+n.InsertFailures, n.Counters, hasCR)
}

// completenessOf: failed is the dropped clashes and the insert failures
// without a clash, which insert_failed counts in every era.
func completenessOf(resolved, failed uint64, counters map[string]uint64, hasCR bool) Completeness {
	c := Completeness{HasClashResolve: hasCR}
	if hasCR {
		c.ClashResolve = &Explained{Explained: resolved, Counted: counters["clash_resolve"]}
		c.InsertFailed = Explained{Explained: failed, Counted: counters["insert_failed"]}
	} else {
		c.InsertFailed = Explained{Explained: resolved + failed, Counted: counters["insert_failed"]}
	}
	return c
}

// Totals sums the namespaces whose counters were read.
type Totals struct {
	NetnsWithCounters int    `json:"netns_with_counters"`
	Incidents         uint64 `json:"incidents"`
	Resolved          uint64 `json:"resolved"`
	Dropped           uint64 `json:"dropped"`
	InsertFailures    uint64 `json:"insert_failures"`
	// Uncounted is the number of incidents in namespaces whose counters
	// were not read, or that had no row (Unlisted): not part of the
	// comparison.
	Uncounted    uint64            `json:"uncounted"`
	Counters     map[string]uint64 `json:"counters"`
	Completeness *Completeness     `json:"completeness"`
}

// TotalsOf sums the summary's namespaces whose counters were read.
func TotalsOf(s *Summary) Totals {
	t := Totals{Counters: map[string]uint64{}, Uncounted: s.Unlisted.Netns}
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
		t.InsertFailures += n.InsertFailures
		for k, v := range n.Counters {
			t.Counters[k] += v
		}
		if _, ok := n.Counters["clash_resolve"]; !ok {
			hasCR = false
		}
	}
	if t.NetnsWithCounters > 0 {
		c := completenessOf(t.Resolved, t.Dropped+t.InsertFailures, t.Counters, hasCR)
		t.Completeness = &c
	}
	return t
}

// Mitigations.

// Mitigation is one line of advice: for a race seen (Race set), or for the
// dropped DNS queries of any race.
type Mitigation struct {
	Race      *int   `json:"race"`
	RaceName  string `json:"race_name,omitempty"`
	Outcome   string `json:"outcome,omitempty"`
	Incidents uint64 `json:"incidents"`
	Dropped   uint64 `json:"dropped"`
	// PortMoved: of the incidents, those whose packet NAT sent from
	// another source port instead of a clash (race 5 before 6.12).
	PortMoved uint64 `json:"port_moved"`
	Text      string `json:"text"`
	// Findings are the ids of the `ctprobe doctor` findings that predict
	// the race (docs/doctor.md), so that prediction and observation can be
	// compared; empty for the dropped-packets row and unpredicted races.
	Findings []string `json:"findings"`
}

type mitigationKey struct {
	race incident.RaceType
	text string
}

func (t *Tally) addMitigation(inc *incident.Incident) {
	r, text, o := inc.Race, inc.Mitigation, inc.Outcome
	if text == "" {
		// An incident built by hand (tests): the race's advice for its
		// outcome and protocol.
		text = r.Mitigation(incident.Facts{Outcome: o, Proto: inc.Loser.Orig.Proto})
	}
	k := mitigationKey{r, text}
	m := t.byMit[k]
	if m == nil {
		m = &MitigationCount{Race: r, Text: text}
		t.byMit[k] = m
	}
	m.Count++
	switch o {
	case incident.OutcomeDropped:
		m.Dropped++
		if d := inc.Loser.Orig; d.Proto == 17 && d.DstPort == 53 {
			m.DNSDropped++
		}
	case incident.OutcomePortMoved:
		m.Moved++
	}
}

func sortMitigations(ms []MitigationCount) {
	slices.SortFunc(ms, func(a, b MitigationCount) int {
		return cmp.Or(cmp.Compare(a.Race, b.Race), cmp.Compare(b.Count, a.Count), cmp.Compare(a.Text, b.Text))
	})
}

// Mitigations are the advice for the races a summary counts, one row per
// race and distinct text (the text depends on the outcome and on what NAT
// did: incident.Facts), in race order, then one for its dropped DNS
// queries.
func Mitigations(s *Summary) []Mitigation {
	rows := s.ByMitigation
	if len(rows) == 0 {
		byText := map[mitigationKey]*MitigationCount{}
		for _, rc := range s.ByRace {
			k := mitigationKey{rc.Race, rc.Race.Mitigation(incident.Facts{Outcome: rc.Outcome})}
			m := byText[k]
			if m == nil {
				m = &MitigationCount{Race: k.race, Text: k.text}
				byText[k] = m
			}
			m.Count += rc.Count
			switch rc.Outcome {
			case incident.OutcomeDropped:
				// A hand-filled summary does not say what was dropped:
				// DNS, the usual case.
				m.Dropped += rc.Count
				m.DNSDropped += rc.Count
			case incident.OutcomePortMoved:
				m.Moved += rc.Count
			}
		}
		for _, m := range byText {
			rows = append(rows, *m)
		}
		sortMitigations(rows)
	}
	var out []Mitigation
	var dnsDropped uint64
	for _, m := range rows {
		ri := int(m.Race)
		out = append(out, Mitigation{Race: &ri, RaceName: m.Race.Name(), Incidents: m.Count, Dropped: m.Dropped, PortMoved: m.Moved, Text: m.Text,
			Findings: append([]string{}, m.Race.Race().Findings...)})
		dnsDropped += m.DNSDropped
	}
	if dnsDropped > 0 {
		out = append(out, Mitigation{Outcome: string(incident.OutcomeDropped), Incidents: dnsDropped, Dropped: dnsDropped, Text: incident.DropMitigation, Findings: []string{}})
	}
	return out
}
