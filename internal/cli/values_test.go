package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// Each checked flag takes what is in range and refuses the rest with the
// range in the message; defaults stay when the flag is not given, and -h
// shows them.
func TestCheckedFlags(t *testing.T) {
	type flags struct {
		n, p  *int
		d     *time.Duration
		count *uint64
	}
	parse := func(args ...string) (flags, error) {
		fs := NewFlagSet("tool")
		f := flags{
			n:     Int(fs, "n", 5, 1, 10, "a number"),
			p:     PowerOfTwo(fs, "p", 8, 4, 64, "a power of two"),
			d:     Duration(fs, "d", time.Second, "a duration"),
			count: Uint64(fs, "a count", "c", "count"),
		}
		return f, Parse(fs, args, &bytes.Buffer{}, "", "")
	}
	f, err := parse()
	if err != nil || *f.n != 5 || *f.p != 8 || *f.d != time.Second || *f.count != 0 {
		t.Fatalf("defaults: %v %d %d %v %d", err, *f.n, *f.p, *f.d, *f.count)
	}
	f, err = parse("-n", "10", "-p", "64", "-d", "0", "-c", "3", "--count", "3")
	if err != nil || *f.n != 10 || *f.p != 64 || *f.d != 0 || *f.count != 3 {
		t.Fatalf("in range: %v %d %d %v %d", err, *f.n, *f.p, *f.d, *f.count)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-n", "0"}, `invalid value "0" for flag -n: want 1 to 10`},
		{[]string{"-n", "11"}, "want 1 to 10"},
		{[]string{"-n", "4294967297"}, "want 1 to 10"},
		{[]string{"-n", "x"}, "want 1 to 10"},
		{[]string{"-p", "48"}, "want a power of two from 4 to 64"},
		{[]string{"-p", "2"}, "want a power of two from 4 to 64"},
		{[]string{"-p", "128"}, "want a power of two from 4 to 64"},
		{[]string{"-d", "5"}, `invalid value "5" for flag -d: want a unit, e.g. 5s`},
		{[]string{"-d", "1.5"}, "want a unit, e.g. 1.5s"},
		{[]string{"-d", "-1s"}, "want 0 or more"},
		{[]string{"-d", "soon"}, "want a duration such as 30s"},
		{[]string{"-c", "5", "--count", "7"}, "-c and -count are one flag, given 5 and then 7: give it once"},
		{[]string{"-c", "-1"}, "want a whole number"},
	} {
		if _, err := parse(c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
	var help bytes.Buffer
	fs := NewFlagSet("tool")
	Int(fs, "n", 5, 1, 10, "a number")
	Duration(fs, "d", time.Second, "a duration")
	Parse(fs, []string{"-h"}, &help, "", "")
	if !strings.Contains(help.String(), "(default 5)") || !strings.Contains(help.String(), "(default 1s)") {
		t.Errorf("-h does not show the defaults:\n%s", help.String())
	}
}
