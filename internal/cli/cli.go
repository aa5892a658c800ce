// Package cli holds what ctprobe's and ctlab's command lines share: flag
// sets that report a mistake in one line instead of printing every flag,
// the usage error (exit status 2), and whether a flag was given.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
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
			PrintFlags(stdout, fs)
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

// sizeUnits are the suffixes ParseSize takes: binary (KiB, MiB, GiB) and,
// as tcpdump's -C counts, decimal (k, M, G: 1000s).
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"B", 1},
}

// ParseSize reads a size in bytes: a whole number with an optional unit
// ("64MiB", "500k", "1048576").
func ParseSize(s string) (int64, error) {
	num, mult := s, int64(1)
	for _, u := range sizeUnits {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = n, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is not a size: want a whole number of bytes with an optional unit (KiB, MiB, GiB, k, M, G), e.g. 64MiB", s)
	}
	return n * mult, nil
}
