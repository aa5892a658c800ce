// Command ctlab runs the conntrack race lab: Kubernetes-like topologies in
// network namespaces, DNS lookups the way glibc and musl do them, and the
// kernel's conntrack counters over the run. See package lab.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/ctprobe/ctprobe/internal/cli"
	"github.com/ctprobe/ctprobe/lab"
)

const usage = `usage:
  ctlab run --scenario NAME [--lookups K] [--endpoints N] [--nat iptables|nft]
            [--iptables BIN] [--timeout D] [-o text|json] [--keep] [-v]
  ctlab flood [--scenario NAME] [--duration D] [--threads N] [--rate R] [--udp-timeout D] [--established udp|tcp]
              [--cpu N] [--marks FILE] [--endpoints N] [--nat iptables|nft] [--iptables BIN] [-o text|json] [--keep] [-v]
                         new UDP flows as fast as possible (one socket, port, datagram each), or with
                         --established the packets of one long flow per thread; prints packets/s,
                         and with --marks the packets of every segment between two lines of FILE
                         (-v says when sending starts; a line "!LABEL" pauses until the next line)
  ctlab lookup --target IP:PORT [--lookups K] [--timeout D] [-o text|json]
                         racing lookups from ctlab's own netns, with no topology (the lab's client in a pod)
  ctlab serve [--endpoint N]
                         a DNS endpoint on port 53 of ctlab's own netns until SIGINT/SIGTERM
  ctlab scenarios        list the scenarios
  ctlab cleanup [--all]  remove lab namespaces (ctl<pid>-*) left by dead runs
`

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	err := dispatch(args, stdout, stderr)
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ue *cli.UsageError
	if errors.As(err, &ue) {
		if len(args) == 0 {
			fmt.Fprintf(stderr, "ctlab: %s\n%s", ue.Msg, usage)
		} else {
			fmt.Fprintf(stderr, "ctlab: %s (ctlab -h for usage)\n", ue.Msg)
		}
		return 2
	}
	// One line: what failed and how to fix it.
	fmt.Fprintf(stderr, "ctlab: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
	return 1
}

func dispatch(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return cli.Usagef("missing command")
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stdout, stderr)
	case "flood":
		return cmdFlood(args[1:], stdout, stderr)
	case "lookup":
		return cmdLookup(args[1:], stdout)
	case "serve":
		return cmdServe(args[1:], stdout)
	case "scenarios":
		if len(args) > 1 {
			return cli.Usagef("scenarios takes no arguments")
		}
		return cmdScenarios(stdout)
	case "cleanup":
		return cmdCleanup(args[1:], stdout)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return cli.Usagef("unknown command %q", args[0])
}

func newFlagSet(name string) *flag.FlagSet { return cli.NewFlagSet(name) }

// parseFlags parses a command's flags; -h prints the usage and the
// command's flags.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	return cli.Parse(fs, args, stdout, usage+"\nflags of "+fs.Name()+":\n", "")
}

// checkCommon validates the flags run and flood share.
func checkCommon(sc lab.Scenario, nat, output string, endpoints int) error {
	if nat != "iptables" && nat != "nft" {
		return cli.Usagef("--nat %q: use iptables or nft", nat)
	}
	if output != "text" && output != "json" {
		return cli.Usagef("-o %q: use text or json", output)
	}
	if endpoints != 0 && sc.FixedEndpoints && endpoints != sc.Endpoints {
		return cli.Usagef("scenario %s always has %d endpoint(s)", sc.Name, sc.Endpoints)
	}
	if endpoints < 0 || endpoints > lab.MaxEndpoints {
		return cli.Usagef("--endpoints: use 1 to %d", lab.MaxEndpoints)
	}
	return nil
}

// setUp builds the scenario's topology (within two minutes) and returns
// what to do when the command ends: remove it, or say where it was kept.
func setUp(ctx context.Context, sc lab.Scenario, opts lab.Options, verbose, keep bool, stderr io.Writer) (*lab.Topology, func(), error) {
	if verbose {
		opts.Logf = func(f string, a ...any) { fmt.Fprintf(stderr, "ctlab: "+f+"\n", a...) }
	}
	setupCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	topo, err := lab.Setup(setupCtx, sc, opts)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, errors.New("interrupted during setup (namespaces removed)")
		}
		return nil, nil, fmt.Errorf("setting up %s: %w", sc.Name, err)
	}
	if keep {
		return topo, func() {
			fmt.Fprintf(stderr, "ctlab: kept namespaces %s* (ip netns list; remove with: ctlab cleanup)\n", topo.Prefix)
		}, nil
	}
	return topo, func() {
		if cerr := topo.Close(); cerr != nil {
			fmt.Fprintf(stderr, "ctlab: cleanup: %v (retry with: ctlab cleanup --all)\n", cerr)
		}
	}, nil
}

func cmdRun(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run")
	scenario := fs.String("scenario", "", "scenario name (see: ctlab scenarios)")
	lookups := fs.Int("lookups", 100, "number of lookups")
	minClashes := fs.Int("min-clashes", 0, "after --lookups, go on until the kernel counted this many clashes in the lab")
	maxLookups := fs.Int("max-lookups", 0, "with --min-clashes: give up after this many lookups (default 20 x --lookups)")
	endpoints := fs.Int("endpoints", 0, "DNS endpoints (default: the scenario's)")
	nat := fs.String("nat", "iptables", "how to write the rules: iptables or nft")
	ipt := fs.String("iptables", "", "iptables binary (default: iptables-legacy, else iptables)")
	timeout := fs.Duration("timeout", lab.DefaultTimeout, "how long a lookup waits for its replies")
	output := fs.String("o", "text", "output: text or json")
	keep := fs.Bool("keep", false, "leave the namespaces in place for inspection (remove later with: ctlab cleanup)")
	verbose := fs.Bool("v", false, "print progress to stderr")
	comm := fs.String("comm", "", "name the threads that send the lookups (at most 15 bytes, any bytes): the sending process a trace shows")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if *scenario == "" {
		return cli.Usagef("run needs --scenario NAME")
	}
	if len(*comm) > 15 || strings.IndexByte(*comm, 0) >= 0 {
		return cli.Usagef("--comm: want at most 15 bytes without NUL (the kernel's TASK_COMM_LEN), got %d", len(*comm))
	}
	sc, err := lab.ScenarioByName(*scenario)
	if err != nil {
		return cli.Usagef("%v", err)
	}
	if *lookups < 0 {
		return cli.Usagef("--lookups must not be negative")
	}
	if *minClashes < 0 || *maxLookups < 0 {
		return cli.Usagef("--min-clashes and --max-lookups must not be negative")
	}
	if *maxLookups == 0 {
		*maxLookups = 20 * *lookups
	}
	if err := checkCommon(sc, *nat, *output, *endpoints); err != nil {
		return err
	}
	if *timeout <= 0 {
		return cli.Usagef("--timeout must be positive")
	}

	// SIGINT/SIGTERM cancel the run; the topology is then removed below.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	topo, done, err := setUp(ctx, sc, lab.Options{Endpoints: *endpoints, NAT: *nat, IPTables: *ipt, Timeout: *timeout, Comm: *comm}, *verbose, *keep, stderr)
	if err != nil {
		return err
	}
	defer done()

	st, runErr := topo.LookupsUntil(ctx, *lookups, *minClashes, max(*maxLookups, *lookups))
	if st.Netns != nil {
		if err := writeResult(stdout, *output, &st); err != nil {
			return err
		}
	}
	if runErr != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted after %d lookups", st.Lookups)
		}
		return runErr
	}
	return nil
}

func cmdFlood(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("flood")
	scenario := fs.String("scenario", "endpoints-2", "scenario name (see: ctlab scenarios)")
	duration := fs.Duration("duration", 5*time.Second, "how long to send")
	threads := fs.Int("threads", 1, "sender threads")
	rate := fs.Float64("rate", 0, "at most this many packets per second in all (0: as fast as possible)")
	established := fs.String("established", "", "send on one established flow per thread instead of new flows: udp (a connected socket whose first query was answered) or tcp (a connection to the service's port 53, TCP_NODELAY writes)")
	udpTimeout := fs.Duration("udp-timeout", 0, "set the UDP conntrack timeouts of the lab's netns to this (whole seconds) and let source ports wrap, each reused 1 s after its entry expired: a flood longer than 64512 flows (0: kernel default, each port once)")
	cpu := fs.Int("cpu", -1, "pin the sender threads to this CPU (the rest of ctlab keeps its CPUs; -1: not pinned)")
	marks := fs.String("marks", "", "read lines from this file (a FIFO) while flooding: each starts a segment labelled with the line (a paused one if it starts with !), and its end ends the flood; the segments' flows are reported")
	endpoints := fs.Int("endpoints", 0, "DNS endpoints (default: the scenario's)")
	nat := fs.String("nat", "iptables", "how to write the rules: iptables or nft")
	ipt := fs.String("iptables", "", "iptables binary (default: iptables-legacy, else iptables)")
	output := fs.String("o", "text", "output: text or json")
	keep := fs.Bool("keep", false, "leave the namespaces in place for inspection (remove later with: ctlab cleanup)")
	verbose := fs.Bool("v", false, "print progress to stderr")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	sc, err := lab.ScenarioByName(*scenario)
	if err != nil {
		return cli.Usagef("%v", err)
	}
	if *duration <= 0 {
		return cli.Usagef("--duration must be positive")
	}
	if *threads < 1 || *threads > lab.MaxFloodThreads {
		return cli.Usagef("--threads: use 1 to %d", lab.MaxFloodThreads)
	}
	if !(*rate >= 0) || math.IsInf(*rate, 1) { // NaN too
		return cli.Usagef("--rate %v: want packets per second, 0 or more (0: as fast as possible)", *rate)
	}
	if *udpTimeout < 0 || *udpTimeout%time.Second != 0 {
		return cli.Usagef("--udp-timeout: use whole seconds (e.g. 2s)")
	}
	if *established != "" && *established != lab.EstablishedUDP && *established != lab.EstablishedTCP {
		return cli.Usagef("--established %q: use %s or %s", *established, lab.EstablishedUDP, lab.EstablishedTCP)
	}
	if *established != "" && *udpTimeout != 0 {
		return cli.Usagef("--udp-timeout is for new flows: an established flow would expire in a pause")
	}
	if err := checkCommon(sc, *nat, *output, *endpoints); err != nil {
		return err
	}
	if *cpu < -1 {
		return cli.Usagef("--cpu: use a CPU number, or -1 for none")
	}
	opts := lab.FloodOptions{Duration: *duration, Threads: *threads, Rate: *rate, Pin: *cpu >= 0, CPU: *cpu, Established: *established}
	if *marks != "" {
		// Opened before the signal handler is installed: the open waits
		// for a writer on a FIFO, and until then ^C simply ends ctlab.
		f, err := os.Open(*marks)
		if err != nil {
			return fmt.Errorf("--marks: %w", err)
		}
		defer f.Close()
		opts.Marks = f
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	topo, done, err := setUp(ctx, sc, lab.Options{Endpoints: *endpoints, NAT: *nat, IPTables: *ipt, UDPTimeout: *udpTimeout}, *verbose, *keep, stderr)
	if err != nil {
		return err
	}
	defer done()

	st, runErr := topo.Flood(ctx, opts)
	if st.Netns != nil {
		if err := writeResult(stdout, *output, &st); err != nil {
			return err
		}
	}
	if runErr != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted after %d packets", st.Packets)
		}
		return runErr
	}
	return nil
}

func cmdLookup(args []string, stdout io.Writer) error {
	fs := newFlagSet("lookup")
	target := fs.String("target", "", "the DNS server or ClusterIP to query, IP:PORT")
	lookups := fs.Int("lookups", 100, "number of lookups")
	timeout := fs.Duration("timeout", lab.DefaultTimeout, "how long a lookup waits for its replies")
	output := fs.String("o", "text", "output: text or json")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	to, err := netip.ParseAddrPort(*target)
	if err != nil {
		return cli.Usagef("--target %q: want IP:PORT (e.g. 10.96.0.10:53)", *target)
	}
	if *lookups < 0 || *timeout <= 0 {
		return cli.Usagef("--lookups must not be negative and --timeout must be positive")
	}
	if *output != "text" && *output != "json" {
		return cli.Usagef("-o %q: use text or json", *output)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := lab.NewClient(to, lab.Options{Timeout: *timeout})
	if err != nil {
		return err
	}
	defer c.Close()
	st, runErr := c.Lookups(ctx, *lookups)
	if err := writeResult(stdout, *output, &st); err != nil {
		return err
	}
	return runErr
}

func cmdServe(args []string, stdout io.Writer) error {
	fs := newFlagSet("serve")
	endpoint := fs.Int("endpoint", 1, "endpoint number, sent in each answer's TTL")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if *endpoint < 1 || *endpoint > lab.MaxEndpoints {
		return cli.Usagef("--endpoint: use 1 to %d", lab.MaxEndpoints)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := lab.Serve(ctx, *endpoint)
	fmt.Fprintf(stdout, "answered %d queries\n", n)
	return err
}

// writeResult prints a run's result as indented JSON or as its text report.
func writeResult(w io.Writer, output string, result interface{ WriteText(io.Writer) error }) error {
	if output != "json" {
		return result.WriteText(w)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(result)
}

func cmdScenarios(stdout io.Writer) error {
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	for _, s := range lab.Scenarios() {
		fmt.Fprintf(tw, "%s\t%s\n", s.Name, s.Description)
	}
	return tw.Flush()
}

func cmdCleanup(args []string, stdout io.Writer) error {
	fs := newFlagSet("cleanup")
	all := fs.Bool("all", false, "also remove namespaces of runs that are still alive (or kept with --keep)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("cleanup needs root: run it as root")
	}
	left, err := lab.Leftovers()
	if err != nil {
		return fmt.Errorf("listing %s: %w", lab.NetnsDir, err)
	}
	removed, err := lab.Cleanup(*all)
	for _, n := range removed {
		fmt.Fprintf(stdout, "removed %s\n", n)
	}
	if !*all {
		for _, l := range left {
			if l.Alive && l.OwnerPid != os.Getpid() {
				fmt.Fprintf(stdout, "kept %s (run %d still alive; --all removes it)\n", l.Name, l.OwnerPid)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	if len(removed) == 0 {
		fmt.Fprintln(stdout, "nothing to remove")
	}
	return nil
}
