package lab

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText prints the flood's result as a readable report.
func (s *FloodStats) WriteText(w io.Writer) error {
	var b strings.Builder
	s.writeHeader(&b)
	fmt.Fprintf(&b, "client     pid %d, %d thread(s) %v in netns %s\n", s.Pid, s.Threads, s.TIDs, s.Client)
	limit := "as fast as possible"
	if s.RateLimit > 0 {
		limit = fmt.Sprintf("at most %.0f/s", s.RateLimit)
	}
	switch s.Established {
	case "":
		fmt.Fprintf(&b, "packets    %d new UDP flows in %v: %.0f flows/s (%s; one socket, source port and datagram each)\n",
			s.Packets, s.Duration.Round(time.Millisecond), s.Rate, limit)
	case EstablishedUDP:
		fmt.Fprintf(&b, "packets    %d datagrams on %d established UDP flow(s) in %v: %.0f/s (%s; one connected socket a thread)\n",
			s.Packets, s.Flows, s.Duration.Round(time.Millisecond), s.Rate, limit)
	case EstablishedTCP:
		fmt.Fprintf(&b, "packets    %d data segments (%d writes) on %d TCP connection(s) in %v: %.0f/s (%s; TCP_NODELAY)\n",
			s.Packets, s.TCPWrites, s.Flows, s.Duration.Round(time.Millisecond), s.Rate, limit)
	}
	if s.Established != "" {
		fmt.Fprintf(&b, "flows      %d of %d still replied in the node's conntrack at the end\n", s.EntriesReplied, s.Flows)
	}
	if s.Threads > 1 {
		fmt.Fprintf(&b, "per thread %v\n", s.PerThread)
	}
	if s.Errors > 0 || s.PortsInUse > 0 {
		fmt.Fprintf(&b, "errors     %d failed packets, %d source ports in use and skipped", s.Errors, s.PortsInUse)
		if s.FirstError != "" {
			fmt.Fprintf(&b, " (first: %s)", s.FirstError)
		}
		b.WriteString("\n")
	}
	if s.PortsExhausted {
		fmt.Fprintf(&b, "stopped    early: all %d source ports were used (use a shorter --duration, a --rate or a --udp-timeout)\n", FloodPorts)
	}
	if s.PortsWrap {
		b.WriteString("ports      wrap: each is used again once its previous flow's entry has expired\n")
	}
	b.WriteString("\nconntrack counters per netns (delta over the flood; entries = now):\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "netns\trole\tinode\tentries\tinsert_failed\tdrop\tearly_drop\tinvalid\t")
	for _, n := range s.Netns {
		d := n.Delta
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t\n",
			n.Name, n.Role, n.Inode, n.After.Entries, d.InsertFailed, d.Drop, d.EarlyDrop, d.Invalid)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return writeSegments(w, s.Segments)
}

// writeSegments prints the segments of a flood with marks, if any.
func writeSegments(w io.Writer, segs []Segment) error {
	if len(segs) == 0 {
		return nil
	}
	if _, err := io.WriteString(w, "\nsegments (cut at each mark):\n"); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "start\tduration\tpackets\tpackets/s\tlabel")
	for _, g := range segs {
		rate := 0.0
		if g.Duration > 0 {
			rate = float64(g.Packets) / g.Duration.Seconds()
		}
		label := g.Label
		if g.Paused {
			label += " (paused)"
		}
		fmt.Fprintf(tw, "%v\t%v\t%d\t%.0f\t%s\n", g.Start.Round(time.Millisecond), g.Duration.Round(time.Millisecond), g.Packets, rate, label)
	}
	return tw.Flush()
}
