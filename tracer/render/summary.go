package render

import (
	"slices"
	"strconv"
	"time"

	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/loss"
	"github.com/ctprobe/ctprobe/tracer/summary"
)

// Text form.

const topN = 10

func appendSummaryText(dst []byte, s *summary.Summary, opt *Options) []byte {
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
	if s.Selection != "" {
		dst = append(dst, "selected: "...)
		dst = append(dst, Escape(s.Selection)...)
		dst = append(dst, '\n')
	}

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
		label := func(r incident.RaceType) string { return strconv.Itoa(int(r)) + " " + r.Name() }
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
			labels[i] = Escape(p.Comm) + "[" + strconv.FormatUint(uint64(p.PID), 10) + "]"
			if p.Comm == "" && p.PID == 0 {
				labels[i] = "(sender unknown)"
			}
			if p.Node != "" {
				labels[i] = "[" + Escape(p.Node) + "] " + labels[i]
			}
			counts[i] = p.Count
		}
		dst = appendCountTable(dst, labels, counts)
		dst = appendUnlisted(dst, s.Unlisted.Processes, "processes")
	}
	if len(s.ByPod) > 0 {
		dst = append(dst, "by pod\n"...)
		labels := make([]string, len(s.ByPod))
		counts := make([]uint64, len(s.ByPod))
		for i, p := range s.ByPod {
			labels[i] = podLabel(p.Pod)
			counts[i] = p.Count
		}
		dst = appendCountTable(dst, labels, counts)
		dst = appendUnlisted(dst, s.Unlisted.Pods, "pods")
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
		dst = appendUnlisted(dst, s.Unlisted.Destinations, "destinations")
	}
	dst = appendNodesText(dst, s)

	// Kernel counters and completeness, per netns and in total.
	nsLabel := func(n *summary.NetnsSummary) string {
		l := "netns " + strconv.FormatUint(n.Netns, 10)
		if n.Node != "" {
			l = "[" + Escape(n.Node) + "] " + l
		}
		if n.Name != "" {
			l += " (" + Escape(n.Name) + ")"
		}
		return l
	}
	labelW := len("total")
	for i := range s.Netns {
		labelW = max(labelW, len(nsLabel(&s.Netns[i])))
	}
	tot := summary.TotalsOf(s)
	if s.CountersLeftOut {
		dst = append(dst, "kernel counters not compared: they count every flow of a netns over the whole capture, and the selection picks some (select by netns alone to compare them)\n"...)
	} else if len(s.Netns) > 0 {
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
		var over bool
		line := func(dst []byte, label string, c *summary.Completeness) []byte {
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
			for _, e := range []*summary.Explained{c.ClashResolve, &c.InsertFailed} {
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
			c := n.Completeness()
			dst = line(dst, nsLabel(n), &c)
		}
		for i := range s.Nodes {
			if c := summary.TotalsOf(s.Nodes[i].Summary).Completeness; c != nil {
				dst = line(dst, "["+Escape(s.Nodes[i].Node)+"] total", c)
			}
		}
		if tot.Completeness != nil {
			dst = line(dst, "total", tot.Completeness)
		}
		if tot.Uncounted > 0 {
			dst = append(dst, "  ("...)
			dst = appendUint(dst, tot.Uncounted)
			dst = append(dst, " incidents in namespaces whose counters were not read are not in the total)\n"...)
		}
		dst = appendUnexplained(dst, s, nsLabel, labelW)
		if over {
			dst = append(dst, "  more incidents than counts: counters are read at the interval edges, so an incident near an edge can fall into the neighbouring interval\n"...)
		}
	}

	// Losses.
	lost := s.LostTotal()
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
			dst = appendEscaped(dst, string(src))
			dst = append(dst, ' ')
			dst = appendUint(dst, s.Lost[src])
		}
		dst = append(dst, "): incidents may be missing\n"...)
	}

	dst = appendFindingCounts(dst, s)

	// Mitigations.
	if ms := summary.Mitigations(s); len(ms) > 0 {
		dst = append(dst, "mitigations\n"...)
		for _, m := range ms {
			dst = append(dst, "  "...)
			if m.Race != nil {
				dst = append(dst, "race "...)
				dst = strconv.AppendInt(dst, int64(*m.Race), 10)
				dst = append(dst, " ("...)
				dst = append(dst, m.RaceName...)
				dst = append(dst, "): "...)
				dst = appendEscaped(dst, m.Text)
				if *m.Race != int(incident.RaceUnknown) {
					switch {
					case m.PortMoved > 0:
						dst = append(dst, " — "...)
						dst = appendUint(dst, m.PortMoved)
						dst = append(dst, " of "...)
						dst = appendUint(dst, m.Incidents)
						dst = append(dst, " sent from another source port"...)
					case m.Dropped == 0:
						dst = append(dst, " — no drops seen: this kernel already settles it"...)
					default:
						dst = append(dst, " — "...)
						dst = appendUint(dst, m.Dropped)
						dst = append(dst, " of "...)
						dst = appendUint(dst, m.Incidents)
						dst = append(dst, " dropped"...)
					}
				}
				if len(m.Findings) > 0 {
					dst = append(dst, " (doctor: "...)
					for i, id := range m.Findings {
						if i > 0 {
							dst = append(dst, ", "...)
						}
						dst = append(dst, id...)
					}
					dst = append(dst, ')')
				}
			} else {
				dst = append(dst, "dropped DNS queries ("...)
				dst = appendUint(dst, m.Dropped)
				dst = append(dst, "): "...)
				dst = appendEscaped(dst, m.Text)
			}
			dst = append(dst, '\n')
		}
	}
	return append(dst, '\n')
}

// appendUnexplained writes, for each netns whose insert_failed or drop
// ctprobe did not fully explain, what is left and the kernel reasons that
// can explain it; nothing when nothing is left.
func appendUnexplained(dst []byte, s *summary.Summary, label func(*summary.NetnsSummary) string, labelW int) []byte {
	title := false
	for i := range s.Netns {
		n := &s.Netns[i]
		u := n.Unexplained()
		if u.InsertFailed == 0 && u.Drop == 0 {
			continue
		}
		if !title {
			dst = append(dst, "unexplained, and what can explain it\n"...)
			title = true
		}
		dst = append(dst, "  "...)
		dst = appendPadded(dst, label(n), labelW)
		dst = append(dst, "  insert_failed +"...)
		dst = appendUint(dst, u.InsertFailed)
		dst = append(dst, ", drop +"...)
		dst = appendUint(dst, u.Drop)
		dst = append(dst, '\n')
		for _, r := range u.Reasons {
			dst = append(dst, "    "...)
			dst = appendEscaped(dst, r)
			dst = append(dst, '\n')
		}
	}
	return dst
}

// appendFindingCounts writes the findings by id and netns, each with its
// first flow and the advice.
func appendFindingCounts(dst []byte, s *summary.Summary) []byte {
	if len(s.Findings) == 0 {
		return dst
	}
	dst = append(dst, "findings\n"...)
	for i := range s.Findings {
		f := &s.Findings[i]
		dst = append(dst, "  "...)
		if f.Node != "" {
			dst = append(dst, '[')
			dst = appendEscaped(dst, f.Node)
			dst = append(dst, "] "...)
		}
		dst = appendEscaped(dst, f.ID)
		dst = append(dst, "  netns "...)
		dst = appendUint(dst, f.Netns)
		dst = append(dst, "  "...)
		dst = appendUint(dst, f.Count)
		dst = append(dst, " (first: "...)
		dst = appendFlow(dst, &f.Example.Flow)
		dst = append(dst, ")\n    fix: "...)
		dst = appendEscaped(dst, f.Example.Mitigation)
		dst = append(dst, '\n')
	}
	return dst
}

func appendExplained(dst []byte, e summary.Explained, name string, color bool) []byte {
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
		dst = appendEscaped(dst, k)
		dst = append(dst, " +"...)
		dst = appendUint(dst, m[k])
	}
	if _, ok := m["clash_resolve"]; !ok {
		dst = append(dst, "  (no clash_resolve: kernel < 5.10)"...)
	}
	return dst
}

// lostOrder puts the known kinds first, in their order, then the rest by
// name.
func lostOrder(m map[loss.Kind]uint64) []loss.Kind {
	out := slices.Clone(loss.Kinds)
	var rest []loss.Kind
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

// appendUnlisted notes the incidents of a breakdown's rows past
// summary.MaxRows.
func appendUnlisted(dst []byte, n uint64, what string) []byte {
	if n == 0 {
		return dst
	}
	dst = append(dst, "  … "...)
	dst = appendUint(dst, n)
	dst = append(dst, " incidents of "...)
	dst = append(dst, what...)
	dst = append(dst, " past the first "...)
	dst = appendUint(dst, summary.MaxRows)
	return append(dst, ", not listed\n"...)
}

// appendNodesText writes the "by node" table of a summary of several
// nodes: each node's incidents, how the kernel settled them, its losses
// and the time its captures cover.
func appendNodesText(dst []byte, s *summary.Summary) []byte {
	if len(s.Nodes) == 0 {
		return dst
	}
	dst = append(dst, "by node\n"...)
	w := 0
	for i := range s.Nodes {
		w = max(w, len(Escape(s.Nodes[i].Node)))
	}
	for i := range s.Nodes {
		n := &s.Nodes[i]
		settled, dropped := n.Settled()
		dst = append(dst, "  "...)
		dst = appendPadded(dst, Escape(n.Node), w)
		dst = append(dst, "  "...)
		dst = appendUint(dst, n.Incidents)
		dst = append(dst, " incidents ("...)
		dst = appendUint(dst, settled)
		dst = append(dst, " settled, "...)
		dst = appendUint(dst, dropped)
		dst = append(dst, " dropped), lost "...)
		dst = appendUint(dst, n.LostTotal())
		dst = append(dst, ", "...)
		dst = append(dst, n.End.Sub(n.Start).Round(time.Millisecond).String()...)
		dst = append(dst, '\n')
	}
	return dst
}

// JSON form.

// jsonNode is one node's row in a summary of several nodes.
type jsonNode struct {
	Node         string                `json:"node"`
	Start        string                `json:"start"`
	End          string                `json:"end"`
	Incidents    uint64                `json:"incidents"`
	Resolved     uint64                `json:"resolved"`
	Dropped      uint64                `json:"dropped"`
	Lost         uint64                `json:"lost"`
	Completeness *summary.Completeness `json:"completeness"`
}

type jsonRaceCount struct {
	Race     int    `json:"race"`
	RaceName string `json:"race_name"`
	Outcome  string `json:"outcome"`
	Count    uint64 `json:"count"`
}

type jsonProcessCount struct {
	Node  string `json:"node,omitempty"`
	Comm  string `json:"comm"`
	PID   uint32 `json:"pid"`
	Count uint64 `json:"count"`
}

type jsonPodCount struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid"`
	Count     uint64 `json:"count"`
}

type jsonDestCount struct {
	Proto string `json:"proto"`
	Dst   string `json:"dst"`
	Count uint64 `json:"count"`
}

type jsonNetns struct {
	Node           string                `json:"node,omitempty"`
	Netns          uint64                `json:"netns"`
	Name           string                `json:"name"`
	Counters       map[string]uint64     `json:"counters"`
	Entries        uint64                `json:"entries"`
	Max            uint64                `json:"nf_conntrack_max"`
	Incidents      uint64                `json:"incidents"`
	Resolved       uint64                `json:"resolved"`
	Dropped        uint64                `json:"dropped"`
	InsertFailures uint64                `json:"insert_failures"`
	Completeness   *summary.Completeness `json:"completeness"`
	Unexplained    *summary.Unexplained  `json:"unexplained"`
}

type jsonFindingCount struct {
	Node    string      `json:"node,omitempty"`
	ID      string      `json:"id"`
	Netns   uint64      `json:"netns"`
	Count   uint64      `json:"count"`
	Example jsonFinding `json:"example"`
}

type jsonLostTotals struct {
	Total    uint64               `json:"total"`
	BySource map[loss.Kind]uint64 `json:"by_source"`
}

type jsonSummary struct {
	Schema        int                  `json:"schema"`
	Kind          string               `json:"kind"`
	Final         bool                 `json:"final"`
	Start         string               `json:"start"`
	End           string               `json:"end"`
	DurationS     float64              `json:"duration_s"`
	Incidents     uint64               `json:"incidents"`
	ByRace        []jsonRaceCount      `json:"by_race"`
	ByProcess     []jsonProcessCount   `json:"by_process"`
	ByPod         []jsonPodCount       `json:"by_pod"`
	ByDestination []jsonDestCount      `json:"by_destination"`
	Netns         []jsonNetns          `json:"netns"`
	Total         summary.Totals       `json:"total"`
	Lost          jsonLostTotals       `json:"lost"`
	Findings      []jsonFindingCount   `json:"findings"`
	Mitigations   []summary.Mitigation `json:"mitigations"`
	Unlisted      summary.Unlisted     `json:"unlisted"`
	Nodes         []jsonNode           `json:"nodes,omitempty"`
	Selection     string               `json:"selection,omitempty"`
}

func summaryJSON(s *summary.Summary, opt *Options) jsonSummary {
	v := jsonSummary{
		Schema:        SchemaVersion,
		Kind:          "summary",
		Final:         s.Final,
		Start:         rfc3339(opt.Clock.in(s.Start)),
		End:           rfc3339(opt.Clock.in(s.End)),
		DurationS:     s.End.Sub(s.Start).Seconds(),
		Incidents:     s.Incidents,
		Selection:     s.Selection,
		ByRace:        []jsonRaceCount{},
		ByProcess:     []jsonProcessCount{},
		ByPod:         []jsonPodCount{},
		ByDestination: []jsonDestCount{},
		Netns:         []jsonNetns{},
		Total:         summary.TotalsOf(s),
		Lost:          jsonLostTotals{BySource: map[loss.Kind]uint64{}},
		Findings:      []jsonFindingCount{},
		Mitigations:   summary.Mitigations(s),
		Unlisted:      s.Unlisted,
	}
	for i := range s.Findings {
		f := &s.Findings[i]
		v.Findings = append(v.Findings, jsonFindingCount{Node: f.Node, ID: f.ID, Netns: f.Netns, Count: f.Count, Example: findingJSON(&f.Example, opt.Clock)})
	}
	if v.Mitigations == nil {
		v.Mitigations = []summary.Mitigation{}
	}
	for _, r := range s.ByRace {
		v.ByRace = append(v.ByRace, jsonRaceCount{Race: int(r.Race), RaceName: r.Race.Name(), Outcome: string(r.Outcome), Count: r.Count})
	}
	for _, p := range s.ByProcess {
		v.ByProcess = append(v.ByProcess, jsonProcessCount(p))
	}
	for _, p := range s.ByPod {
		v.ByPod = append(v.ByPod, jsonPodCount{Namespace: p.Pod.Namespace, Name: p.Pod.Name, UID: p.Pod.UID, Count: p.Count})
	}
	for _, d := range s.ByDestination {
		v.ByDestination = append(v.ByDestination, jsonDestCount{Proto: event.ProtoName(d.Proto), Dst: d.Dst.String(), Count: d.Count})
	}
	for i := range s.Netns {
		n := &s.Netns[i]
		jn := jsonNetns{Node: n.Node, Netns: n.Netns, Name: n.Name, Counters: n.Counters, Entries: n.Entries, Max: n.Max,
			Incidents: n.Incidents, Resolved: n.Resolved, Dropped: n.Dropped, InsertFailures: n.InsertFailures}
		if n.Counters != nil {
			c := n.Completeness()
			u := n.Unexplained()
			jn.Completeness, jn.Unexplained = &c, &u
		}
		v.Netns = append(v.Netns, jn)
	}
	for _, k := range loss.Kinds {
		v.Lost.BySource[k] = 0
	}
	for k, n := range s.Lost {
		v.Lost.BySource[k] = n
	}
	v.Lost.Total = s.LostTotal()
	for i := range s.Nodes {
		n := &s.Nodes[i]
		settled, dropped := n.Settled()
		v.Nodes = append(v.Nodes, jsonNode{Node: n.Node, Start: rfc3339(opt.Clock.in(n.Start)), End: rfc3339(opt.Clock.in(n.End)),
			Incidents: n.Incidents, Resolved: settled, Dropped: dropped, Lost: n.LostTotal(), Completeness: summary.TotalsOf(n.Summary).Completeness})
	}
	return v
}
