package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/ctprobe/ctprobe/tracer"
)

// runProbes prints the attach plan without tracing: with privileges it
// really loads and attaches each point, then detaches, so the table is what
// `trace --timeline` would get; without them it shows what the
// kernel offers. The default mode uses the clash point of this plan, or
// confirm where that one is missing.
func runProbes(args []string, stdout io.Writer) error {
	fs := newFlagSet("probes")
	output := fs.String("o", "text", "output format: text or json")
	attach := fs.String("attach", "auto", "attach mode to try: auto, fentry or kprobe")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	mode, err := tracer.ParseAttach(*attach)
	if err != nil {
		return usageError("%v", err)
	}
	if *output != "text" && *output != "json" {
		return usageError("-o %q: want text or json", *output)
	}
	var plan []tracer.PlanEntry
	var traceErr error
	fentry := "unknown (needs privileges to try)"
	k, err := tracer.ProbeKernel()
	if err != nil {
		return err
	}
	if perr := tracer.CheckPrivileges(); perr != nil {
		traceErr = perr
	} else {
		t, err := tracer.Open(tracer.Options{Attach: mode, Timeline: true})
		if t != nil {
			plan = t.Plan
			fentry = t.Fentry()
			t.Close()
		}
		traceErr = err
	}
	if *output == "json" {
		out := map[string]any{
			"kind": "probes", "kernel": k.Release, "btf": k.BTF, "kprobes": k.Kprobes,
			"conntrack_loaded": k.Conntrack, "fentry": fentry, "clash_era": k.ClashEra(), "plan": plan, "traceable": traceErr == nil,
		}
		if traceErr != nil {
			out["error"] = traceErr.Error()
		}
		return json.NewEncoder(stdout).Encode(out)
	}
	fmt.Fprintf(stdout, "kernel      %s\n", k.Release)
	fmt.Fprintf(stdout, "btf         %v\n", yesNo(k.BTF))
	fmt.Fprintf(stdout, "kprobes     %v\n", yesNo(k.Kprobes))
	fmt.Fprintf(stdout, "fentry      %s\n", fentry)
	fmt.Fprintf(stdout, "conntrack   %v\n", yesNo(k.Conntrack))
	fmt.Fprintf(stdout, "clash era   %s\n\n", k.ClashEra())
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POINT\tFUNCTION\tMODE\tSTATUS\tREASON")
	for _, e := range plan {
		mode := string(e.Mode)
		if mode == "" {
			mode = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Point, e.Function, mode, e.Status, e.Reason)
	}
	tw.Flush()
	if traceErr != nil {
		fmt.Fprintf(stdout, "\ntrace would fail: %v\n", traceErr)
		if errors.Is(traceErr, tracer.ErrNotTraceable) {
			return &exitError{code: 1, err: errors.New("no required probe point can attach on this kernel")}
		}
	}
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
