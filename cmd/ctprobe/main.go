// Command ctprobe traces Linux conntrack insertion races: why the second of
// two packets sent at once from one socket is dropped or rewritten.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/ctprobe/ctprobe/internal/cli"
	"github.com/ctprobe/ctprobe/tracer/capture"
	"github.com/ctprobe/ctprobe/tracer/render"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

const usage = `usage: ctprobe <command> [flags]

commands:
  trace     trace conntrack races live (needs root): sudo ctprobe trace
  report    read capture files written by "trace -w": ctprobe report -r FILE [-r FILE ...] (several nodes: one report)
  probes    show which kernel functions ctprobe would attach to (with --timeline), and how
  selftest  reproduce races in throwaway namespaces and check ctprobe against the kernel's counters
  doctor    say which races will drop on this node, from its kernel, NAT rules, table and resolvers (no probes; exit 3 when some will)
  version   print the version

Run "ctprobe <command> -h" for the flags of a command.

exit status: 0 success, 1 error, 2 bad command line, 3 doctor's findings,
4 capture truncated (report printed what it held), 5 capture corrupt (report
printed what came before the damage)
`

// Exit statuses of a capture that report could not read to its end, so
// that a script can tell it from a whole one (README, Using it).
const (
	exitTruncated = 4
	exitCorrupt   = 5
)

// exitError carries an exit status; its message is printed on one line.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exitStatus ends a command that has said everything it had to (doctor's
// findings) with a status other than 0, and no error line.
type exitStatus int

func (s exitStatus) Error() string { return "exit status " + strconv.Itoa(int(s)) }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "trace":
		err = runTrace(rest, stdout, stderr)
	case "report":
		err = runReport(rest, stdout, stderr)
	case "probes":
		err = runProbes(rest, stdout)
	case "selftest":
		err = runSelftest(rest, stdout, stderr)
	case "doctor":
		err = runDoctor(rest, stdout)
	case "version", "--version":
		fmt.Fprintln(stdout, "ctprobe", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "ctprobe: unknown command %q: run \"ctprobe help\" for the list\n", cmd)
		return 2
	}
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var st exitStatus
	if errors.As(err, &st) {
		return int(st)
	}
	var logged *loggedError
	if !errors.As(err, &logged) {
		// Errors may quote a capture's strings: escaped like every other
		// output.
		fmt.Fprintln(stderr, "ctprobe:", render.Escape(err.Error()))
	}
	var ee *exitError
	var ue *cli.UsageError
	switch {
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue):
		return 2
	case errors.Is(err, capture.ErrTruncated):
		return exitTruncated
	case errors.Is(err, capture.ErrCorrupt):
		return exitCorrupt
	}
	return 1
}

// newFlagSet returns the flag set of a ctprobe command.
func newFlagSet(name string) *flag.FlagSet { return cli.NewFlagSet("ctprobe " + name) }

// parseFlags parses a command's flags: a mistake is a usage error (exit 2)
// that names the command's help; -h prints the flags to stdout.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	return cli.Parse(fs, args, stdout, "usage of "+fs.Name()+":\n", fmt.Sprintf(": see \"%s -h\"", fs.Name()))
}
