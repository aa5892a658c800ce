package cli

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Flags whose values are checked as they are parsed: a value out of range
// fails the parse with the range in the message (`invalid value "-1" for
// flag -history: want 1 to 1048576`), instead of failing later in a map
// the kernel refuses or silently turning into a default.

// intValue is an int from min to max; with pow2, a power of two.
type intValue struct {
	p        *int
	min, max int
	pow2     bool
}

func (v *intValue) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.Itoa(*v.p)
}

func (v *intValue) Set(s string) error {
	n, err := strconv.ParseInt(s, 0, 64)
	if err != nil || n < int64(v.min) || n > int64(v.max) || v.pow2 && n&(n-1) != 0 {
		if v.pow2 {
			return fmt.Errorf("want a power of two from %d to %d", v.min, v.max)
		}
		return fmt.Errorf("want %d to %d", v.min, v.max)
	}
	*v.p = int(n)
	return nil
}

// Int defines an int flag that takes only values from min to max.
func Int(fs *flag.FlagSet, name string, value, min, max int, usage string) *int {
	p := &value
	fs.Var(&intValue{p: p, min: min, max: max}, name, usage)
	return p
}

// PowerOfTwo defines an int flag that takes only powers of two from min to
// max.
func PowerOfTwo(fs *flag.FlagSet, name string, value, min, max int, usage string) *int {
	p := &value
	fs.Var(&intValue{p: p, min: min, max: max, pow2: true}, name, usage)
	return p
}

// durationValue is a duration of 0 or more, with its unit.
type durationValue struct{ p *time.Duration }

func (v *durationValue) String() string {
	if v.p == nil {
		return ""
	}
	return v.p.String()
}

func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
			return fmt.Errorf("want a unit, e.g. %ss", s)
		}
		return errors.New("want a duration such as 30s, 5m or 1h30m")
	case d < 0:
		return errors.New("want 0 or more")
	}
	*v.p = d
	return nil
}

// Duration defines a flag of a duration of 0 or more, which needs its unit
// ("5" is refused: 5 what?).
func Duration(fs *flag.FlagSet, name string, value time.Duration, usage string) *time.Duration {
	p := &value
	fs.Var(&durationValue{p: p}, name, usage)
	return p
}

// uintValue is a count that may be given under several names, once.
type uintValue struct {
	p     *uint64
	set   bool
	names string // "-c and -count"
}

func (v *uintValue) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.FormatUint(*v.p, 10)
}

func (v *uintValue) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return errors.New("want a whole number, 0 or more")
	}
	if v.set && n != *v.p {
		return fmt.Errorf("%s are one flag, given %d and then %d: give it once", v.names, *v.p, n)
	}
	*v.p, v.set = n, true
	return nil
}

// Uint64 defines a flag of a whole number under names (the first
// described by usage, the others as the same flag): giving it twice with
// different values is a mistake, not "the last one wins".
func Uint64(fs *flag.FlagSet, usage string, names ...string) *uint64 {
	v := &uintValue{p: new(uint64), names: "-" + strings.Join(names, " and -")}
	for i, name := range names {
		if i > 0 {
			usage = "same as -" + names[0]
		}
		fs.Var(v, name, usage)
	}
	return v.p
}
