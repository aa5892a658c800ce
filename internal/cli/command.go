package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Program is a command with subcommands (ctprobe trace, ctprobe report,
// ...). Its help, man page and completion scripts are all written from
// Commands' flag sets, so that they cannot disagree with what parses.
type Program struct {
	Name    string
	Summary string // one line, for the man page's NAME
	// ExitStatus says what each exit status means (usage and man page).
	ExitStatus string
	Commands   []Command
}

// Command is one subcommand.
type Command struct {
	Name    string
	Summary string
	// Synopsis lines, each after "PROGRAM NAME ".
	Synopsis []string
	Examples []Example
	// Args names the positional arguments the command takes ("" for none).
	Args   string
	Hidden bool // left out of usage, man page and completion
	// Define adds the command's flags to fs and returns what runs once
	// they are parsed (fs.Args() holds the positional arguments).
	Define func(fs *flag.FlagSet) func(stdout, stderr io.Writer) error
}

// Example is a command line and what it does.
type Example struct{ Line, Does string }

// commands are p's own and the ones every program has: help, completion
// and the hidden man.
func (p *Program) commands() []Command {
	return append(append([]Command{}, p.Commands...),
		Command{Name: "help", Summary: "show a command's synopsis, examples and flags", Args: "[COMMAND]",
			Synopsis: []string{"[COMMAND]"},
			Examples: []Example{{p.Name + " help trace", "the same as " + p.Name + " trace --help"}},
			Define:   p.defineHelp},
		Command{Name: "completion", Summary: "print a shell completion script (" + strings.Join(Shells, ", ") + ")", Args: "SHELL",
			Synopsis: []string{strings.Join(Shells, "|")},
			Examples: []Example{
				{"source <(" + p.Name + " completion bash)", "complete " + p.Name + "'s commands and flags in this bash"},
				{p.Name + " completion fish > ~/.config/fish/completions/" + p.Name + ".fish", "install it for fish"},
			},
			Define: p.defineCompletion},
		Command{Name: "man", Summary: "print the man page (roff)", Hidden: true, Define: p.defineMan},
	)
}

func (p *Program) find(name string) (Command, bool) {
	for _, c := range p.commands() {
		if c.Name == name {
			return c, true
		}
	}
	return Command{}, false
}

// Run runs the command args name. With no arguments it prints the usage
// to stderr and returns a UsageError without a message; -h, --help and
// "help COMMAND" print help to stdout and return flag.ErrHelp.
func (p *Program) Run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		p.Usage(stderr)
		return &UsageError{}
	}
	name := args[0]
	if name == "-h" || name == "--help" {
		p.Usage(stdout)
		return flag.ErrHelp
	}
	c, ok := p.find(name)
	if !ok {
		return Usagef("unknown command %q: run \"%s help\" for the list", name, p.Name)
	}
	fs := NewFlagSet(p.Name + " " + c.Name)
	run := c.Define(fs)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			p.Help(stdout, c)
			return err
		}
		return Usagef("%v: see \"%s help %s\"", err, p.Name, c.Name)
	}
	if c.Args == "" && fs.NArg() > 0 {
		return Usagef("unexpected argument %q: see \"%s help %s\"", fs.Arg(0), p.Name, c.Name)
	}
	return run(stdout, stderr)
}

// Usage writes the list of commands.
func (p *Program) Usage(w io.Writer) {
	fmt.Fprintf(w, "usage: %s <command> [flags]\n\ncommands:\n", p.Name)
	for _, c := range p.commands() {
		if !c.Hidden {
			fmt.Fprintf(w, "  %-11s %s\n", c.Name, c.Summary)
		}
	}
	fmt.Fprintf(w, "\nRun \"%s help <command>\" (or \"%s <command> --help\") for its synopsis, examples and flags.\n\n%s",
		p.Name, p.Name, p.ExitStatus)
}

func (p *Program) defineHelp(fs *flag.FlagSet) func(stdout, stderr io.Writer) error {
	return func(stdout, _ io.Writer) error {
		switch fs.NArg() {
		case 0:
			p.Usage(stdout)
			return nil
		case 1:
			c, ok := p.find(fs.Arg(0))
			if !ok {
				return Usagef("help %q: no such command: run \"%s help\" for the list", fs.Arg(0), p.Name)
			}
			p.Help(stdout, c)
			return nil
		}
		return Usagef("help takes one command, given %d: e.g. \"%s help trace\"", fs.NArg(), p.Name)
	}
}

func (p *Program) defineCompletion(fs *flag.FlagSet) func(stdout, stderr io.Writer) error {
	return func(stdout, _ io.Writer) error {
		if fs.NArg() != 1 {
			return Usagef("completion takes one shell: %s completion %s", p.Name, strings.Join(Shells, "|"))
		}
		return p.Completion(stdout, fs.Arg(0))
	}
}

func (p *Program) defineMan(*flag.FlagSet) func(stdout, stderr io.Writer) error {
	return func(stdout, _ io.Writer) error { p.Man(stdout); return nil }
}

// visible are the commands usage, man page and completion show.
func (p *Program) visible() []Command {
	var out []Command
	for _, c := range p.commands() {
		if !c.Hidden {
			out = append(out, c)
		}
	}
	return out
}

// flags are c's flag set, in the order flag.FlagSet visits them (sorted).
func flags(p *Program, c Command) []*flag.Flag {
	fs := NewFlagSet(p.Name + " " + c.Name)
	c.Define(fs)
	var out []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { out = append(out, f) })
	return out
}
