package cli

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	newFS := func() (*flag.FlagSet, *int) {
		fs := NewFlagSet("tool cmd")
		return fs, fs.Int("n", 3, "a number")
	}
	var out bytes.Buffer
	fs, n := newFS()
	if err := Parse(fs, []string{"-n", "4"}, &out, "", ""); err != nil || *n != 4 || !Given(fs, "n") {
		t.Errorf("-n 4: %v, n %d, given %v", err, *n, Given(fs, "n"))
	}
	fs, _ = newFS()
	if err := Parse(fs, nil, &out, "", ""); err != nil || Given(fs, "n") {
		t.Errorf("no flags: %v, given %v", err, Given(fs, "n"))
	}
	for _, args := range [][]string{{"-n", "x"}, {"--bogus"}, {"extra"}} {
		fs, _ = newFS()
		var ue *UsageError
		err := Parse(fs, args, &out, "", `: see "tool cmd -h"`)
		if !errors.As(err, &ue) || !strings.HasSuffix(ue.Msg, `: see "tool cmd -h"`) || strings.Contains(ue.Msg, "\n") {
			t.Errorf("%v: %v", args, err)
		}
	}
	if out.Len() != 0 {
		t.Errorf("mistakes printed %q", out.String())
	}
	fs, _ = newFS()
	if err := Parse(fs, []string{"-h"}, &out, "usage of tool cmd:\n", ""); !errors.Is(err, flag.ErrHelp) ||
		!strings.HasPrefix(out.String(), "usage of tool cmd:\n") || !strings.Contains(out.String(), "a number") {
		t.Errorf("-h: %v, %q", err, out.String())
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"64MiB": 64 << 20, "1GiB": 1 << 30, "500k": 500_000, "2M": 2_000_000, "4096": 4096, "12B": 12, "0": 0} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1.5MiB", "64 MiB", "64mib", "9999999999GiB", "x"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}
}
