package main

import (
	"errors"
	"flag"
	"io"

	"github.com/ctprobe/ctprobe/internal/cli"
	"github.com/ctprobe/ctprobe/tracer"
	"github.com/ctprobe/ctprobe/tracer/mode"
	"github.com/ctprobe/ctprobe/tracer/render"
)

// defineProbes defines probes' flags; it prints the attach plan without
// tracing: with privileges it really loads and attaches each point, then
// detaches, so the table is what `trace --timeline` would get; without them
// it shows what the kernel offers. The default mode uses the clash point of
// this plan, or confirm where that one is missing.
func defineProbes(fs *flag.FlagSet) func(stdout, stderr io.Writer) error {
	output := fs.String("o", "text", "output format: text or json")
	attach := fs.String("attach", "auto", "attach mode to try: auto, fentry or kprobe")
	nf := addNameFlags(fs)
	return func(stdout, stderr io.Writer) error {
		if err := nf.check(); err != nil {
			return err
		}
		how, err := tracer.ParseAttach(*attach)
		if err != nil {
			return cli.Usagef("--%v", err)
		}
		r, err := render.New(stdout, *output, render.Options{})
		if err != nil {
			return cli.Usagef("-o %q: want text or json", *output)
		}
		k, err := tracer.ProbeKernel()
		if err != nil {
			return err
		}
		p := render.Probes{Kernel: k.Release, BTF: k.BTF, Kprobes: k.Kprobes, Conntrack: k.Conntrack,
			Fentry: "unknown (needs privileges to try)", ClashEra: k.ClashEra()}
		for _, fn := range tracer.DatingFunctions() {
			s := k.Symbols[fn]
			p.Functions = append(p.Functions, render.KernelFunction{Name: fn, Names: s.Names, Module: s.Module, Params: k.FuncParams(fn)})
		}
		p.Datapath = tracer.DatapathNotes(k)
		p.Names = nf.status()
		traceErr := tracer.CheckPrivileges()
		if traceErr == nil {
			t, err := tracer.Open(tracer.Options{Attach: how, Mode: mode.Timeline})
			if t != nil {
				p.Plan = t.Plan
				p.Fentry = t.Fentry()
				t.Close()
			}
			traceErr = err
		}
		if traceErr != nil {
			p.Error = traceErr.Error()
		}
		if err := r.Probes(&p); err != nil {
			return err
		}
		if errors.Is(traceErr, tracer.ErrNotTraceable) {
			return &exitError{code: 1, err: errors.New("no required probe point can attach on this kernel")}
		}
		return nil
	}
}
