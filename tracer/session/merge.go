package session

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/ctprobe/ctprobe/tracer/capture"
	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/kstat"
	"github.com/ctprobe/ctprobe/tracer/loss"
	"github.com/ctprobe/ctprobe/tracer/names"
	"github.com/ctprobe/ctprobe/tracer/plan"
	"github.com/ctprobe/ctprobe/tracer/render"
	"github.com/ctprobe/ctprobe/tracer/stream"
	"github.com/ctprobe/ctprobe/tracer/summary"
)

// NodeCaptures are the captures of one node, oldest first: one file, the
// files of a rotated capture, or of traces run one after another.
type NodeCaptures struct {
	Node  string // the hostname their headers name
	Files []CaptureFile
}

// CaptureFile is an open capture and where it was read from.
type CaptureFile struct {
	Path string
	*capture.Reader
}

// sameBoot is how far apart two captures' boot times may be and still be
// one boot of one node: a trace measures it when it starts (BootTime), a
// few µs off each time; a rotated capture's files all carry the first.
const sameBoot = time.Second

// ByNode groups captures by node: the hostname in their headers and the
// boot of its kernel (a kernel's times and conntrack entries are its
// boot's own, and its counters start again at boot). Each node's captures
// are oldest first (by the start in the header), the nodes by name. Two
// nodes that share a hostname (or a node that rebooted) are named by
// hostname and boot time: "node-a@2026-12-02T10:30:12Z".
func ByNode(files []CaptureFile) []NodeCaptures {
	var nodes []NodeCaptures
	for _, f := range files {
		hdr := f.Header()
		i := slices.IndexFunc(nodes, func(n NodeCaptures) bool {
			first := n.Files[0].Header()
			return first.Hostname == hdr.Hostname && time.Duration(first.BootTimeUnixNano-hdr.BootTimeUnixNano).Abs() < sameBoot
		})
		if i < 0 {
			nodes = append(nodes, NodeCaptures{Node: hdr.Hostname})
			i = len(nodes) - 1
		}
		nodes[i].Files = append(nodes[i].Files, f)
	}
	for i, n := range nodes {
		slices.SortStableFunc(n.Files, func(a, b CaptureFile) int {
			return cmp.Compare(a.Header().StartUnixNano, b.Header().StartUnixNano)
		})
		shared := slices.ContainsFunc(nodes, func(o NodeCaptures) bool {
			return o.Files[0].Header().Hostname == n.Node && o.Files[0] != n.Files[0]
		})
		if shared {
			nodes[i].Node += "@" + time.Unix(0, n.Files[0].Header().BootTimeUnixNano).UTC().Format(time.RFC3339)
		}
	}
	slices.SortFunc(nodes, func(a, b NodeCaptures) int { return cmp.Compare(a.Node, b.Node) })
	return nodes
}

// FileRenderer is the renderer of one capture file's lines: node names the
// node in a report of several ("" for one), at is the file's time as the
// replay reads it (render.Options.Now) and hdr its header (its boot time
// is render.Clock's).
type FileRenderer func(node string, at *CaptureTime, hdr *capture.Header) render.Renderer

// ReplayNodes reports the captures of several nodes as one, in time order:
// each node's records go through a pipeline of their own (conntrack entries
// are a node's own), and of the lines every node has ready, the earliest
// (by wall-clock time: each file's boot time turns kernel times into times
// of day) is written first, to the renderer newRenderer gives for its file.
// The files of one node are read as one trace. The summary of every node
// (summary.Merge, with a row and completeness per node) goes to out; with
// one node, its own summary does, and no line names its node.
//
// A capture cut short or damaged is reported up to the damage, like
// Replay; the first such error is returned, wrapped with its path, after
// the summary.
func ReplayNodes(nodes []NodeCaptures, opts ReplayOptions, newRenderer FileRenderer, out render.Renderer) (*summary.Summary, error) {
	replays := make([]*nodeReplay, len(nodes))
	for i, n := range nodes {
		for _, f := range n.Files {
			if err := CheckReplayable(f.Reader); err != nil {
				return nil, fmt.Errorf("read %s: %w", f.Path, err)
			}
		}
		name := n.Node
		if len(nodes) == 1 {
			name = ""
		}
		replays[i] = &nodeReplay{name: name, files: n.Files, opts: opts, newRenderer: newRenderer}
		if err := replays[i].open(0); err != nil {
			return nil, err
		}
	}
	for {
		var next *nodeReplay
		for _, n := range replays {
			for len(n.q.items) == 0 && !n.done {
				if err := n.step(); err != nil {
					return nil, err
				}
			}
			if len(n.q.items) > 0 && (next == nil || n.q.items[0].at.Before(next.q.items[0].at)) {
				next = n
			}
		}
		if next == nil {
			break
		}
		item := next.q.items[0]
		next.q.items = next.q.items[1:]
		// Each file has a renderer of its own, which holds event lines
		// back (render.Renderer.Flush): flushed at once, the lines keep the
		// merge's order, and none waits for a summary that only out gets.
		if err := item.emit(item.to); err != nil {
			return nil, err
		}
		if err := item.to.Flush(); err != nil {
			return nil, err
		}
	}
	var sums []summary.NodeSummary
	var readErr error
	for i, n := range replays {
		sums = append(sums, summary.NodeSummary{Node: nodes[i].Node, Summary: n.q.summary})
		readErr = cmp.Or(readErr, n.readErr)
	}
	sum := sums[0].Summary
	if len(sums) > 1 {
		sum = summary.Merge(sums)
	}
	if err := out.Summary(sum); err != nil {
		return sum, err
	}
	return sum, readErr
}

// nodeReplay reads one node's captures, one record per step, into a queue
// of lines.
type nodeReplay struct {
	name        string
	files       []CaptureFile
	file        int // the one being read
	opts        ReplayOptions
	newRenderer FileRenderer
	p           *stream.Processor
	q           *queue
	table       *names.Table
	readErr     error
	done        bool
}

// open starts reading file i: its lines go to its own renderer, with its
// clocks; the node's pipeline goes on from the file before.
func (n *nodeReplay) open(i int) error {
	n.file = i
	hdr := n.files[i].Header()
	at := NewCaptureTime(&hdr)
	if n.p == nil {
		n.q = &queue{}
		n.table = names.NewTable()
		n.p = stream.New(n.q, printsEvents(&hdr, n.opts.All), time.Unix(0, hdr.StartUnixNano), plan.IsAttached(hdr.Plan, "clash"))
		n.p.Select(n.opts.Select.ForBoot(hdr.BootTimeUnixNano))
		n.p.SetNames(n.table)
	}
	n.q.to, n.q.at, n.q.clock = n.newRenderer(n.name, at, &hdr), at, render.Clock{BootTimeUnixNano: hdr.BootTimeUnixNano}
	if i > 0 {
		return nil // one trace, as the live run printed it: one header and plan
	}
	return startStream(n.q, &hdr, true)
}

// step feeds one record; at the end of a file it goes on with the next,
// and after the last it summarises the node.
func (n *nodeReplay) step() error {
	f := n.files[n.file]
	rec, err := f.Next()
	if err == nil {
		return feed(n.p, n.table, n.q.at, &rec)
	}
	if !errors.Is(err, io.EOF) && n.readErr == nil {
		n.readErr = fmt.Errorf("read %s: %w", f.Path, err)
	}
	if n.file+1 < len(n.files) {
		return n.open(n.file + 1)
	}
	first := n.files[0].Header()
	end := n.q.at.Now()
	var counters []kstat.NetnsCounters
	if tr := f.Trailer(); tr != nil {
		end = time.Unix(0, tr.EndUnixNano)
		counters = n.opts.Select.Counters(kstat.Growth(first.Counters, tr.Counters))
	}
	n.done = true
	_, err = n.p.Finish(end, counters)
	return err
}

// queue is a node's lines in the order its pipeline wrote them, each with
// its wall-clock time and the renderer of the file it came from, until the
// merge writes them. What it keeps is copied: the pipeline reuses its
// events and incidents.
type queue struct {
	items   []queued
	to      render.Renderer
	at      *CaptureTime
	clock   render.Clock
	summary *summary.Summary // the node's final summary, merged, not written
}

type queued struct {
	at   time.Time
	to   render.Renderer
	emit func(render.Renderer) error
}

func (q *queue) push(at time.Time, emit func(render.Renderer) error) error {
	q.items = append(q.items, queued{at, q.to, emit})
	return nil
}

func (q *queue) Header(h *render.Header) error {
	c := *h
	return q.push(c.Start, func(r render.Renderer) error { return r.Header(&c) })
}

func (q *queue) Plan(p []plan.Entry) error {
	return q.push(q.at.Now(), func(r render.Renderer) error { return r.Plan(p) })
}

func (q *queue) Event(ev *event.Event) error {
	c := *ev
	return q.push(q.clock.Time(c.Time), func(r render.Renderer) error { return r.Event(&c) })
}

func (q *queue) Incident(inc *incident.Incident) error {
	c := *inc
	c.Loser.Timeline, c.Winner.Timeline = slices.Clone(c.Loser.Timeline), slices.Clone(c.Winner.Timeline)
	return q.push(q.clock.Time(c.Time), func(r render.Renderer) error { return r.Incident(&c) })
}

func (q *queue) Finding(f *incident.Finding) error {
	c := *f
	c.Flow.Timeline = slices.Clone(c.Flow.Timeline)
	return q.push(q.clock.Time(c.Time), func(r render.Renderer) error { return r.Finding(&c) })
}

func (q *queue) Lost(l loss.Count) error {
	return q.push(q.at.Now(), func(r render.Renderer) error { return r.Lost(l) })
}

func (q *queue) Warning(msg string) error {
	return q.push(q.at.Now(), func(r render.Renderer) error { return r.Warning(msg) })
}

func (q *queue) Summary(s *summary.Summary) error {
	if s.Final {
		q.summary = s
	}
	return nil
}

func (q *queue) Probes(*render.Probes) error { return nil }
func (q *queue) Flush() error                { return nil } // the merge flushes each line's renderer
