package cli

import (
	"fmt"
	"io"
	"strings"
)

// Man writes p's man page in roff (man(7) macros), section 8: a command
// run by root. It carries no date, so that it changes only when a command
// or flag does.
func (p *Program) Man(w io.Writer) {
	up := strings.ToUpper(p.Name)
	fmt.Fprintf(w, ".TH %s 8 \"\" \"%s\" \"System Administration\"\n", up, p.Name)
	// Left-aligned and unhyphenated: flags and command lines read as typed.
	fmt.Fprintf(w, ".nh\n.ad l\n")
	fmt.Fprintf(w, ".SH NAME\n%s \\- %s\n", p.Name, roff(p.Summary))
	fmt.Fprintf(w, ".SH SYNOPSIS\n.B %s\n.I command\n.RI [ flags ]\n", p.Name)
	fmt.Fprintf(w, ".SH COMMANDS\n")
	for _, c := range p.visible() {
		fmt.Fprintf(w, ".SS %s\n%s\n", roff(p.Name+" "+c.Name), roff(c.Summary))
		for _, s := range synopsis(p, c) {
			fmt.Fprintf(w, ".PP\n.B\n%s\n", roff(strings.TrimSpace(p.Name+" "+c.Name+" "+s)))
		}
		if len(c.Examples) > 0 {
			fmt.Fprintln(w, ".PP\nExamples:")
			for _, e := range c.Examples {
				fmt.Fprintf(w, ".TP\n.B\n%s\n%s\n", roff(e.Line), roff(e.Does))
			}
		}
		if fl := flags(p, c); len(fl) > 0 {
			fmt.Fprintln(w, ".PP\nFlags:")
			for _, f := range fl {
				spelling, value, usage := flagLine(f)
				if value == "" {
					fmt.Fprintf(w, ".TP\n.B %s\n", roff(spelling))
				} else {
					fmt.Fprintf(w, ".TP\n.BI \"%s \" %s\n", roff(spelling), roff(value))
				}
				fmt.Fprint(w, roff(usage))
				if d := defaultOf(f); d != "" {
					fmt.Fprintf(w, " (default %s)", roff(d))
				}
				fmt.Fprintln(w)
			}
		}
	}
	fmt.Fprintf(w, ".SH EXIT STATUS\n%s\n", roff(p.ExitStatus))
	fmt.Fprintf(w, ".SH ENVIRONMENT\n.TP\n.B NO_COLOR\nset and not empty, no output is coloured, as with \\-\\-no\\-color (https://no\\-color.org).\n")
}

// roff escapes text for a roff line: backslashes and dashes, and a line
// that would start a request.
func roff(s string) string {
	s = strings.NewReplacer(`\`, `\e`, "-", `\-`, "\n", " ").Replace(strings.TrimSpace(s))
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}
