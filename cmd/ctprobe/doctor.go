package main

import (
	"flag"
	"io"

	"github.com/ctprobe/ctprobe/doctor"
	"github.com/ctprobe/ctprobe/internal/cli"
)

// exitDrops is doctor's exit status when a finding says packets will be
// lost (docs/doctor.md).
const exitDrops = 3

// defineDoctor defines doctor's flags; it says which races will drop on this
// node, from the kernel, the NAT rules, the conntrack table and the pods'
// resolvers, without probes.
func defineDoctor(fs *flag.FlagSet) func(stdout, stderr io.Writer) error {
	ns := fs.String("netns", "", "only this network namespace: an inode number or a path (/run/netns/NAME, /proc/PID/ns/net)")
	output := fs.String("o", "text", "output format: text or json")
	fill := fs.Float64("fill-threshold", 100*doctor.DefaultFillThreshold, "conntrack-table-fill above this percentage of nf_conntrack_max")
	return func(stdout, stderr io.Writer) error {
		if *output != "text" && *output != "json" {
			return cli.Usagef("-o %q: want text or json", *output)
		}
		if !(*fill > 0 && *fill <= 100) { // NaN too: no fill is above it
			return cli.Usagef("--fill-threshold %v: want a percentage above 0 and at most 100", *fill)
		}
		opts := doctor.Options{FillThreshold: *fill / 100}
		if *ns != "" {
			opts.Netns = []string{*ns}
		}
		rep, err := doctor.Run(opts)
		if err != nil {
			return err
		}
		if *output == "json" {
			err = doctor.WriteJSON(stdout, rep)
		} else {
			err = doctor.WriteText(stdout, rep)
		}
		if err != nil {
			return err
		}
		if rep.Drops() {
			return exitStatus(exitDrops)
		}
		return nil
	}
}
