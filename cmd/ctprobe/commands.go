package main

import (
	"flag"
	"fmt"
	"io"

	"golang.org/x/sys/unix"

	"github.com/ctprobe/ctprobe/internal/cli"
	"github.com/ctprobe/ctprobe/tracer/capture"
	"github.com/ctprobe/ctprobe/tracer/render"
)

// program is ctprobe's command line: its help, man page (docs/ctprobe.8)
// and completion scripts come from these commands' flag sets.
var program = &cli.Program{
	Name:       "ctprobe",
	Summary:    "trace Linux conntrack insertion races: why the second of two packets sent at once is dropped or rewritten",
	ExitStatus: exitStatuses,
	Commands: []cli.Command{
		{Name: "trace", Summary: "trace conntrack races live (needs root)", Define: defineTrace,
			Synopsis: []string{"[--timeline] [--all] [-o text|json] [-w FILE] [--proto P] [--host ADDR] [--port N] [--netns INODE] [--pid PID]"},
			Examples: []cli.Example{
				{Line: "sudo ctprobe trace", Does: "print each race as it happens, and a summary on Ctrl-C"},
				{Line: "sudo ctprobe trace --timeline --port 53 -w dns.ctp", Does: "follow both packets of each DNS race and keep the records for ctprobe report"},
				{Line: "sudo ctprobe trace -o json --duration 60s", Does: "one JSON object per line for a minute (docs/json-schema.md)"},
			}},
		{Name: "report", Summary: "read capture files written by trace -w (several nodes: one report)", Define: defineReport,
			Synopsis: []string{"-r FILE [-r FILE ...] [--all] [-o text|json|pcapng] [--race N,...] [--outcome O,...] [--pod POD] [--since TIME] [--until TIME] [trace's filters]"},
			Examples: []cli.Example{
				{Line: "ctprobe report -r dns.ctp", Does: "the report trace printed, from the capture"},
				{Line: "ctprobe report -r 'node-*.ctp'", Does: "several nodes' captures as one report, in time order"},
				{Line: "ctprobe report -r 'node-*.ctp' --race 3,4 --outcome dropped --since 10:30:00", Does: "only the dropped races of types 3 and 4 since 10:30, from every node"},
				{Line: "ctprobe report -r dns.ctp -o pcapng > dns.pcapng", Does: "the packets, for Wireshark"},
			}},
		{Name: "probes", Summary: "show which kernel functions ctprobe would attach to (with --timeline), and how", Define: defineProbes,
			Examples: []cli.Example{{Line: "sudo ctprobe probes", Does: "try each probe point on this kernel and say what attaches"}}},
		{Name: "selftest", Summary: "reproduce races in throwaway namespaces and check ctprobe against the kernel's counters", Define: defineSelftest,
			Examples: []cli.Example{{Line: "sudo ctprobe selftest", Does: "race 200 lookups through DNAT and compare the incidents with the kernel's"}}},
		{Name: "doctor", Summary: "say which races will drop on this node, from its kernel, NAT rules, table and resolvers (no probes; exit 3 when some will)", Define: defineDoctor,
			Examples: []cli.Example{{Line: "sudo ctprobe doctor", Does: "findings for every network namespace"}}},
		{Name: "version", Summary: "print the version, the kernel's release and the capture and JSON format versions", Define: defineVersion},
	},
}

// defineVersion prints what a bug report needs: ctprobe's version, the
// running kernel, and the versions of the formats it writes.
func defineVersion(*flag.FlagSet) func(stdout, stderr io.Writer) error {
	return func(stdout, _ io.Writer) error {
		var uts unix.Utsname
		if err := unix.Uname(&uts); err != nil {
			return fmt.Errorf("uname: %w", err)
		}
		fmt.Fprintf(stdout, "ctprobe %s\nkernel %s\ncapture format %d\nJSON schema %d\n",
			version, unix.ByteSliceToString(uts.Release[:]), capture.Version, render.SchemaVersion)
		return nil
	}
}
