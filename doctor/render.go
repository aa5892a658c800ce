package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/render"
)

// WriteJSON writes the report as one JSON object (docs/doctor.md, JSON).
func WriteJSON(w io.Writer, r *Report) error {
	v := struct {
		Schema int    `json:"schema"`
		Kind   string `json:"kind"`
		*Report
		Drops bool `json:"drops"`
	}{render.SchemaVersion, "doctor", r, r.Drops()}
	for i := range r.Namespaces {
		ns := &r.Namespaces[i]
		// Empty lists, not null, for readers that iterate.
		for _, l := range []*[]string{&ns.Tunnels, &ns.Unread} {
			if *l == nil {
				*l = []string{}
			}
		}
		if ns.Rules == nil {
			ns.Rules = []Rule{}
		}
		if ns.Resolvers == nil {
			ns.Resolvers = []Resolver{}
		}
		if ns.Findings == nil {
			ns.Findings = []Finding{}
		}
		for j := range ns.Findings {
			if ns.Findings[j].Races == nil {
				ns.Findings[j].Races = []Prediction{}
			}
		}
	}
	enc := json.NewEncoder(w)
	return enc.Encode(v)
}

// outcomeText says an outcome in words.
func outcomeText(o incident.Outcome) string {
	switch o {
	case incident.OutcomeNATClash:
		return "reply-only insert"
	case "":
		return "no clash"
	}
	return string(o)
}

// WriteText writes the report for a person: the kernel, then each
// namespace with something to say, its findings worst first, then a
// closing line.
func WriteText(w io.Writer, r *Report) error {
	var b strings.Builder
	k := r.Kernel
	fmt.Fprintf(&b, "kernel %s:", k.Release)
	for i, p := range k.Races {
		if i > 0 {
			b.WriteString(",")
		}
		note := ""
		if p.Race == incident.RaceNATPort {
			note = " (random SNAT ports)"
		}
		fmt.Fprintf(&b, " race %d%s %s", p.Race, note, outcomeText(p.Outcome))
	}
	if k.ClashResolve {
		b.WriteString("; settled clashes counted in clash_resolve\n")
	} else {
		b.WriteString("; no clash_resolve counter (before 5.10 insert_failed counts settled clashes too)\n")
	}
	quiet := 0
	count := map[Severity]int{}
	var dropIDs []string
	for i := range r.Namespaces {
		ns := &r.Namespaces[i]
		for _, f := range ns.Findings {
			count[f.Severity]++
			if f.Severity == SeverityDrops {
				dropIDs = append(dropIDs, f.ID+" in "+ns.Name)
			}
		}
		if len(ns.Findings) == 0 && len(ns.Unread) == 0 {
			quiet++
			continue
		}
		writeNamespace(&b, ns)
	}
	if quiet > 0 {
		fmt.Fprintf(&b, "\n%d other namespace(s): nothing found\n", quiet)
	}
	fmt.Fprintf(&b, "\n%d finding(s) drop packets, %d settled by this kernel, %d info", count[SeverityDrops], count[SeveritySettled], count[SeverityInfo])
	if len(dropIDs) > 0 {
		fmt.Fprintf(&b, ": %s", strings.Join(dropIDs, ", "))
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func writeNamespace(b *strings.Builder, ns *Namespace) {
	fmt.Fprintf(b, "\nnetns %d (%s)\n", ns.Inode, ns.Name)
	if c := ns.Conntrack; c != nil {
		fmt.Fprintf(b, "  conntrack: %d of %d entries, %d buckets, UDP timeouts %d s / %d s (stream)", c.Count, c.Max, c.Buckets, c.UDPTimeout, c.UDPStreamTimeout)
		for _, name := range []string{"clash_resolve", "insert_failed", "drop", "chain_too_long"} {
			if v, ok := c.Counters[name]; ok {
				fmt.Fprintf(b, ", %s %d", name, v)
			}
		}
		b.WriteString("\n")
	} else {
		b.WriteString("  conntrack: not loaded in this namespace\n")
	}
	if len(ns.Rules) > 0 {
		tools := map[string]int{}
		var order []string
		for _, r := range ns.Rules {
			if tools[r.Tool] == 0 {
				order = append(order, r.Tool)
			}
			tools[r.Tool]++
		}
		parts := make([]string, len(order))
		for i, t := range order {
			parts[i] = fmt.Sprintf("%d from %s", tools[t], t)
		}
		fmt.Fprintf(b, "  nat rules: %s\n", strings.Join(parts, ", "))
	}
	for _, f := range ns.Findings {
		fmt.Fprintf(b, "  %-8s %s: %s\n", strings.ToUpper(string(f.Severity)), f.ID, f.Summary)
		for _, e := range f.Evidence {
			fmt.Fprintf(b, "           %s\n", e)
		}
		if len(f.Races) > 0 {
			parts := make([]string, len(f.Races))
			for i, p := range f.Races {
				parts[i] = fmt.Sprintf("race %d %s", p.Race, outcomeText(p.Outcome))
				if p.When != "" {
					parts[i] += " where " + p.When
				}
			}
			fmt.Fprintf(b, "           on this kernel: %s\n", strings.Join(parts, ", "))
		}
		fmt.Fprintf(b, "           fix: %s\n", f.Mitigation)
	}
	for _, u := range ns.Unread {
		fmt.Fprintf(b, "  not read: %s\n", u)
	}
}
