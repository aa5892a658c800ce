// Package cli holds what ctprobe's and ctlab's command lines share: flag
// sets that report a mistake in one line instead of printing every flag,
// the usage error (exit status 2), and whether a flag was given.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// UsageError is a mistake on the command line: exit status 2.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef returns a UsageError.
func Usagef(format string, a ...any) error { return &UsageError{Msg: fmt.Sprintf(format, a...)} }

// NewFlagSet returns a flag set that returns its errors instead of printing
// them with every flag's default: Parse reports a mistake on one line, and
// prints the flags only for -h.
func NewFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// Parse parses args. A flag mistake, or an argument left over, becomes a
// UsageError whose message ends with hint (e.g. `: see "ctprobe trace -h"`);
// -h writes help, then the flags and their defaults, to stdout and returns
// flag.ErrHelp.
func Parse(fs *flag.FlagSet, args []string, stdout io.Writer, help, hint string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, help)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return err
		}
		return Usagef("%v%s", err, hint)
	}
	if fs.NArg() > 0 {
		return Usagef("unexpected argument %q%s", fs.Arg(0), hint)
	}
	return nil
}

// Given says whether the command line set the flag, even to its default.
func Given(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}
