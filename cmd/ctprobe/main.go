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

// exitStatuses says what each exit status means (usage and man page).
const exitStatuses = `exit status: 0 success, 1 error, 2 bad command line, 3 doctor's findings,
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
	if len(args) == 1 && args[0] == "--version" {
		args = []string{"version"}
	}
	err := program.Run(args, stdout, stderr)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var st exitStatus
	if errors.As(err, &st) {
		return int(st)
	}
	var logged *loggedError
	var ue *cli.UsageError
	// A usage error without a message followed the list of commands.
	if !errors.As(err, &logged) && !(errors.As(err, &ue) && ue.Msg == "") {
		// Errors may quote a capture's strings: escaped like every other
		// output.
		fmt.Fprintln(stderr, "ctprobe:", render.Escape(err.Error()))
	}
	var ee *exitError
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
