package summary

import (
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/loss"
	"github.com/ctprobe/ctprobe/tracer/names"
)

// NodeSummary is one node's summary in a report of several nodes'
// captures.
type NodeSummary struct {
	Node string // its hostname
	*Summary
}

// Settled and Dropped count the node's incidents that the kernel settled
// (merged, nat-clash) and those it dropped.
func (n *NodeSummary) Settled() (settled, dropped uint64) {
	for _, r := range n.ByRace {
		switch {
		case r.Outcome.Settled():
			settled += r.Count
		case r.Outcome == incident.OutcomeDropped:
			dropped += r.Count
		}
	}
	return settled, dropped
}

// Merge adds up the final summaries of several nodes into one over all of
// them: from the earliest start to the latest end, every breakdown summed,
// each process, namespace and finding row kept with its node (pids and
// inodes repeat across nodes), and
// the nodes' own summaries in Nodes for a per-node table.
func Merge(nodes []NodeSummary) *Summary {
	s := &Summary{Final: true, Lost: map[loss.Kind]uint64{}, Nodes: nodes, Selection: nodes[0].Selection, CountersLeftOut: nodes[0].CountersLeftOut}
	byRace, byProc := map[RaceCount]uint64{}, map[ProcessCount]uint64{}
	byPod, byDst := map[names.Pod]uint64{}, map[DestCount]uint64{}
	byMit, byFind := map[mitigationKey]*MitigationCount{}, map[findingKey]*FindingCount{}
	for i, n := range nodes {
		if i == 0 || n.Start.Before(s.Start) {
			s.Start = n.Start
		}
		if n.End.After(s.End) {
			s.End = n.End
		}
		s.Final = s.Final && n.Final
		s.Incidents += n.Incidents
		for _, r := range n.ByRace {
			byRace[RaceCount{Race: r.Race, Outcome: r.Outcome}] += r.Count
		}
		for _, m := range n.ByMitigation {
			k := mitigationKey{m.Race, m.Text}
			sum := byMit[k]
			if sum == nil {
				sum = &MitigationCount{Race: m.Race, Text: m.Text}
				byMit[k] = sum
			}
			sum.Count += m.Count
			sum.Dropped += m.Dropped
			sum.Moved += m.Moved
			sum.DNSDropped += m.DNSDropped
		}
		for _, f := range n.Findings {
			f.Node = n.Node
			byFind[findingKey{node: n.Node, id: f.ID, netns: f.Netns}] = &f
		}
		for _, p := range n.ByProcess {
			byProc[ProcessCount{Node: n.Node, Comm: p.Comm, PID: p.PID}] += p.Count
		}
		for _, p := range n.ByPod {
			byPod[p.Pod] += p.Count
		}
		for _, d := range n.ByDestination {
			byDst[DestCount{Proto: d.Proto, Dst: d.Dst}] += d.Count
		}
		for _, row := range n.Netns {
			row.Node = n.Node
			s.Netns = append(s.Netns, row)
		}
		for k, c := range n.Lost {
			s.Lost[k] = loss.Add(s.Lost[k], c)
		}
		s.Unlisted.Processes += n.Unlisted.Processes
		s.Unlisted.Pods += n.Unlisted.Pods
		s.Unlisted.Destinations += n.Unlisted.Destinations
		s.Unlisted.Netns += n.Unlisted.Netns
		s.Unlisted.Findings += n.Unlisted.Findings
	}
	s.setRows(byRace, byMit, byProc, byPod, byDst, byFind)
	return s
}
