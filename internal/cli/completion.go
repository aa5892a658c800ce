package cli

import (
	"fmt"
	"io"
	"strings"
)

// Shells are the shells Completion writes scripts for.
var Shells = []string{"bash", "zsh", "fish"}

// Completion writes the completion script of shell: commands, then each
// command's flags (file names elsewhere, as for -r FILE and -w FILE).
func (p *Program) Completion(w io.Writer, shell string) error {
	switch shell {
	case "bash":
		p.bash(w)
	case "zsh":
		p.zsh(w)
	case "fish":
		p.fish(w)
	default:
		return Usagef("completion %q: want one of %s", shell, strings.Join(Shells, ", "))
	}
	return nil
}

// names are the visible commands' names.
func (p *Program) names() string {
	var n []string
	for _, c := range p.visible() {
		n = append(n, c.Name)
	}
	return strings.Join(n, " ")
}

// spellings are c's flags as typed.
func (p *Program) spellings(c Command) []string {
	var out []string
	for _, f := range flags(p, c) {
		out = append(out, Spelling(f.Name))
	}
	return out
}

// words are what a command's positional argument completes to: a command
// for help, a shell for completion, file names otherwise.
func (p *Program) words(c Command) string {
	switch c.Name {
	case "help":
		return p.names()
	case "completion":
		return strings.Join(Shells, " ")
	}
	return ""
}

func (p *Program) bash(w io.Writer) {
	fn := "_" + p.Name
	fmt.Fprintf(w, "# bash completion for %[1]s: source <(%[1]s completion bash)\n%[2]s() {\n", p.Name, fn)
	fmt.Fprintf(w, "\tlocal cur=${COMP_WORDS[COMP_CWORD]}\n\tCOMPREPLY=()\n")
	fmt.Fprintf(w, "\tif [ \"$COMP_CWORD\" -eq 1 ]; then\n\t\tmapfile -t COMPREPLY < <(compgen -W '%s' -- \"$cur\")\n\t\treturn\n\tfi\n", p.names())
	fmt.Fprintf(w, "\tlocal words=\n\tcase ${COMP_WORDS[1]} in\n")
	for _, c := range p.visible() {
		fmt.Fprintf(w, "\t%s)\n\t\tcase $cur in\n\t\t-*) words='%s' ;;\n\t\t*) words='%s' ;;\n\t\tesac ;;\n",
			c.Name, strings.Join(p.spellings(c), " "), p.words(c))
	}
	// Nothing offered: complete -o default completes file names.
	fmt.Fprintf(w, "\tesac\n\tif [ -n \"$words\" ]; then\n\t\tmapfile -t COMPREPLY < <(compgen -W \"$words\" -- \"$cur\")\n\tfi\n}\n")
	fmt.Fprintf(w, "complete -o default -F %s %s\n", fn, p.Name)
}

func (p *Program) zsh(w io.Writer) {
	fn := "_" + p.Name
	fmt.Fprintf(w, "#compdef %[1]s\n# zsh completion for %[1]s: %[1]s completion zsh > \"${fpath[1]}/%[2]s\"\n%[2]s() {\n", p.Name, fn)
	fmt.Fprintf(w, "\tif (( CURRENT == 2 )); then\n\t\tlocal -a commands=(\n")
	for _, c := range p.visible() {
		fmt.Fprintf(w, "\t\t\t%s\n", shellQuote(c.Name+":"+c.Summary))
	}
	fmt.Fprintf(w, "\t\t)\n\t\t_describe command commands\n\t\treturn\n\tfi\n\tlocal -a flags words\n\tcase $words[2] in\n")
	for _, c := range p.visible() {
		fmt.Fprintf(w, "\t%s)\n\t\tflags=(\n", c.Name)
		for _, f := range flags(p, c) {
			_, _, usage := flagLine(f)
			fmt.Fprintf(w, "\t\t\t%s\n", shellQuote(Spelling(f.Name)+":"+usage))
		}
		fmt.Fprintf(w, "\t\t)\n\t\twords=(%s) ;;\n", p.words(c))
	}
	fmt.Fprintf(w, "\tesac\n\tif [[ $PREFIX == -* ]]; then\n\t\t_describe flag flags\n\telif (( ${#words} )); then\n\t\tcompadd -a words\n\telse\n\t\t_files\n\tfi\n}\n")
	fmt.Fprintf(w, "if [ \"$funcstack[1]\" = %[1]s ]; then %[1]s \"$@\"; else compdef %[1]s %[2]s; fi\n", fn, p.Name)
}

func (p *Program) fish(w io.Writer) {
	fmt.Fprintf(w, "# fish completion for %[1]s: %[1]s completion fish > ~/.config/fish/completions/%[1]s.fish\n", p.Name)
	for _, c := range p.visible() {
		fmt.Fprintf(w, "complete -c %s -n __fish_use_subcommand -f -a %s -d %s\n", p.Name, c.Name, shellQuote(c.Summary))
	}
	for _, c := range p.visible() {
		when := shellQuote("__fish_seen_subcommand_from " + c.Name)
		if words := p.words(c); words != "" {
			fmt.Fprintf(w, "complete -c %s -n %s -f -a %s\n", p.Name, when, shellQuote(words))
		}
		for _, f := range flags(p, c) {
			_, value, usage := flagLine(f)
			opt := "-l " + f.Name
			if len(f.Name) == 1 {
				opt = "-s " + f.Name
			}
			if value != "" {
				opt += " -r"
			}
			fmt.Fprintf(w, "complete -c %s -n %s %s -d %s\n", p.Name, when, opt, shellQuote(usage))
		}
	}
}

// shellQuote quotes s for bash, zsh and fish alike: in single quotes, a
// single quote closed, escaped and reopened ('\”).
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
