package cli

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// Spelling is how help writes a flag: one dash for one letter (-o, -w),
// two for a word (--all), as the docs spell them; Go's flag package takes
// both, and prints only one dash.
func Spelling(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// flagLine is a flag as help and the man page show it: its spelling, with
// the name of its value unless it is a switch ("-o string", "--all").
func flagLine(f *flag.Flag) (spelling, value, usage string) {
	value, usage = flag.UnquoteUsage(f)
	switch f.Value.(type) { // this package's checked values, which flag names "value"
	case *intValue, *uintValue:
		value = "int"
	case *durationValue:
		value = "duration"
	}
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		value = ""
	}
	return Spelling(f.Name), value, usage
}

// defaultOf is f's default as help shows it, "" when it is the zero value.
func defaultOf(f *flag.Flag) string {
	switch f.DefValue {
	case "", "0", "false", "0s":
		return ""
	}
	return f.DefValue
}

// PrintFlags writes fs's flags, one dash for a letter and two for a word.
func PrintFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) { printFlag(w, f) })
}

func printFlag(w io.Writer, f *flag.Flag) {
	spelling, value, usage := flagLine(f)
	if value != "" {
		spelling += " " + value
	}
	fmt.Fprintf(w, "  %s\n    \t%s", spelling, strings.ReplaceAll(usage, "\n", "\n    \t"))
	if d := defaultOf(f); d != "" {
		fmt.Fprintf(w, " (default %s)", d)
	}
	fmt.Fprintln(w)
}

// Help writes c's help: what it does, its synopsis, examples, then flags.
func (p *Program) Help(w io.Writer, c Command) {
	fmt.Fprintf(w, "%s %s: %s\n\nusage:\n", p.Name, c.Name, c.Summary)
	for _, s := range synopsis(p, c) {
		fmt.Fprintf(w, "  %s\n", strings.TrimSpace(p.Name+" "+c.Name+" "+s))
	}
	if len(c.Examples) > 0 {
		fmt.Fprintln(w, "\nexamples:")
		for _, e := range c.Examples {
			fmt.Fprintf(w, "  %s\n      %s\n", e.Line, e.Does)
		}
	}
	if fl := flags(p, c); len(fl) > 0 {
		fmt.Fprintln(w, "\nflags:")
		for _, f := range fl {
			printFlag(w, f)
		}
	}
}

// synopsis are c's synopsis lines; when it gives none, "[flags]" if it has
// flags.
func synopsis(p *Program, c Command) []string {
	switch {
	case len(c.Synopsis) > 0:
		return c.Synopsis
	case len(flags(p, c)) > 0:
		return []string{"[flags]"}
	}
	return []string{""}
}
