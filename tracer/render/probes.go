package render

import (
	"unicode/utf8"

	"github.com/ctprobe/ctprobe/tracer/names"
	"github.com/ctprobe/ctprobe/tracer/plan"
)

// Probes is what `ctprobe probes` says: what the kernel offers and the
// attach plan a trace would get.
type Probes struct {
	Kernel    string // release
	BTF       bool
	Kprobes   bool
	Conntrack bool   // nf_conntrack loaded
	Fentry    string // "yes", or why not
	ClashEra  string
	Plan      []plan.Entry
	// Functions are what the kernel says of each function ctprobe may
	// probe or date the kernel by: the evidence its choices rest on.
	Functions []KernelFunction
	// Datapath notes say what on this node changes what ctprobe can see.
	Datapath []string
	// Names says where a trace's pod and container names would come from.
	Names names.Status
	// Error is why a trace would fail ("" when it would not).
	Error string
}

// KernelFunction is one function as kallsyms and BTF show it.
type KernelFunction struct {
	Name   string   `json:"name"`
	Names  []string `json:"kallsyms"`   // its kallsyms names (the exact one first, then compiler clones); none when absent
	Module string   `json:"module"`     // "" for vmlinux
	Params int      `json:"btf_params"` // parameter count from BTF, -1 when BTF does not describe it
}

// Probes writes the kernel's facts, then the plan as a table.
func (t *Text) Probes(p *Probes) error {
	return t.write(func(b []byte) []byte {
		row := func(b []byte, label, value string) []byte {
			b = appendPadded(b, label, 12)
			b = appendEscaped(b, value)
			return append(b, '\n')
		}
		b = row(b, "kernel", p.Kernel)
		b = row(b, "btf", yesNo(p.BTF))
		b = row(b, "kprobes", yesNo(p.Kprobes))
		b = row(b, "fentry", p.Fentry)
		b = row(b, "conntrack", yesNo(p.Conntrack))
		b = row(b, "clash era", p.ClashEra)
		b = row(b, "names", p.Names.String())
		b = append(b, '\n')
		cells := [][5]string{{"POINT", "FUNCTION", "MODE", "STATUS", "REASON"}}
		for _, e := range p.Plan {
			attach := string(e.Attach)
			if attach == "" {
				attach = "-"
			}
			cells = append(cells, [5]string{Escape(e.Point), Escape(e.Function), Escape(attach), Escape(string(e.Status)), Escape(e.Reason)})
		}
		var w [4]int
		for _, c := range cells {
			for i := range w {
				w[i] = max(w[i], utf8.RuneCountInString(c[i]))
			}
		}
		for _, c := range cells {
			for i := range w {
				b = appendPadded(b, c[i], w[i]+2)
			}
			b = append(b, c[4]...)
			b = append(b, '\n')
		}
		for _, n := range p.Datapath {
			b = append(b, "\nnote: "...)
			b = appendEscaped(b, n)
			b = append(b, '\n')
		}
		if p.Error != "" {
			b = append(b, "\ntrace would fail: "...)
			b = appendEscaped(b, p.Error)
			b = append(b, '\n')
		}
		return b
	})
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

type jsonProbePlanEntry struct {
	jsonPlanEntry
	Required bool `json:"required"`
}

type jsonProbes struct {
	Schema    int                  `json:"schema"`
	Kind      string               `json:"kind"`
	Kernel    string               `json:"kernel"`
	BTF       bool                 `json:"btf"`
	Kprobes   bool                 `json:"kprobes"`
	Conntrack bool                 `json:"conntrack_loaded"`
	Fentry    string               `json:"fentry"`
	ClashEra  string               `json:"clash_era"`
	Plan      []jsonProbePlanEntry `json:"plan"`
	Functions []KernelFunction     `json:"functions"`
	Datapath  []string             `json:"datapath"`
	Names     names.Status         `json:"names"`
	Traceable bool                 `json:"traceable"`
	Error     *string              `json:"error"`
}

// Probes writes a "kind":"probes" line.
func (j *JSON) Probes(p *Probes) error {
	v := jsonProbes{Schema: SchemaVersion, Kind: "probes", Kernel: p.Kernel, BTF: p.BTF, Kprobes: p.Kprobes, Conntrack: p.Conntrack,
		Fentry: p.Fentry, ClashEra: p.ClashEra, Plan: []jsonProbePlanEntry{}, Functions: p.Functions, Datapath: p.Datapath, Names: p.Names, Traceable: p.Error == ""}
	if p.Error != "" {
		v.Error = &p.Error
	}
	for _, e := range p.Plan {
		v.Plan = append(v.Plan, jsonProbePlanEntry{jsonPlanEntryOf(e), e.Required})
	}
	if v.Datapath == nil {
		v.Datapath = []string{}
	}
	if v.Functions == nil {
		v.Functions = []KernelFunction{}
	}
	return j.encode(v)
}
