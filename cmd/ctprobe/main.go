// Command ctprobe traces Linux conntrack insertion races: why the second of
// two packets sent at once from one socket is dropped or rewritten.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

const usage = `usage: ctprobe <command> [flags]

commands:
  trace     trace conntrack races live (needs root): sudo ctprobe trace
  report    read a capture file written by "trace -w": ctprobe report -r FILE
  probes    show which kernel functions ctprobe would attach to (with --timeline), and how
  selftest  reproduce races in throwaway namespaces and check ctprobe against the kernel's counters
  version   print the version

Run "ctprobe <command> -h" for the flags of a command.
`

// exitError carries an exit status; its message is printed on one line.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError is a bad command line: exit status 2.
func usageError(format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, a...)}
}

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
	fmt.Fprintln(stderr, "ctprobe:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// newFlagSet returns a flag set that returns errors instead of printing
// them with the whole usage: a bad flag is reported on one line.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("ctprobe "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parseFlags parses and turns flag errors into usage errors (exit 2); -h
// prints the flags to stdout.
// flagGiven says whether the command line set the flag, even to its default.
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, "usage of %s:\n", fs.Name())
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return err
		}
		return usageError("%v: see \"%s -h\"", err, fs.Name())
	}
	if fs.NArg() > 0 {
		return usageError("unexpected argument %q: see \"%s -h\"", fs.Arg(0), fs.Name())
	}
	return nil
}
