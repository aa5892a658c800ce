package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ctprobe/ctprobe/internal/cli"
	"github.com/ctprobe/ctprobe/tracer/capture"
	"github.com/ctprobe/ctprobe/tracer/render"
)

// Every command's help is the same from "ctprobe help CMD" and "ctprobe
// CMD --help" (and -h), starts with its synopsis, and spells flags as the
// docs do; trace's is kept as a golden file.
func TestHelp(t *testing.T) {
	for _, c := range program.Commands {
		code, viaHelp, _ := runCLI("help", c.Name)
		if code != 0 {
			t.Fatalf("help %s: exit %d", c.Name, code)
		}
		for _, h := range []string{"--help", "-h"} {
			if code, out, _ := runCLI(c.Name, h); code != 0 || out != viaHelp {
				t.Errorf("%s %s: exit %d, and its help differs from \"help %s\":\n%s", c.Name, h, code, c.Name, out)
			}
		}
		if !strings.Contains(viaHelp, "\nusage:\n  ctprobe "+c.Name) {
			t.Errorf("help %s has no synopsis:\n%s", c.Name, viaHelp)
		}
		if strings.Contains(viaHelp, "\n  -all") || strings.Contains(viaHelp, "\n  -no-color") {
			t.Errorf("help %s spells a word flag with one dash:\n%s", c.Name, viaHelp)
		}
	}
	_, trace, _ := runCLI("help", "trace")
	if strings.Index(trace, "examples:") > strings.Index(trace, "flags:") || !strings.Contains(trace, "\n  --all\n") {
		t.Errorf("trace's help does not show examples before its flags, or --all:\n%s", trace)
	}
	golden(t, "testdata/help-trace.txt", trace)
	_, usage, _ := runCLI("help")
	golden(t, "testdata/help.txt", usage)
}

// The completion scripts are golden files; bash's is loaded by bash and
// completes "ctprobe tr<TAB>" to trace, and trace's flags.
func TestCompletion(t *testing.T) {
	scripts := map[string]string{}
	for _, sh := range cli.Shells {
		code, out, _ := runCLI("completion", sh)
		if code != 0 {
			t.Fatalf("completion %s: exit %d", sh, code)
		}
		golden(t, "testdata/completion."+sh, out)
		scripts[sh] = out
	}
	path := filepath.Join(t.TempDir(), "ctprobe.bash")
	if err := os.WriteFile(path, []byte(scripts["bash"]), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("bash", "-n", path).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	complete := func(words ...string) []string {
		t.Helper()
		script := fmt.Sprintf(`source %q
COMP_WORDS=(%s); COMP_CWORD=%d
_ctprobe
printf '%%s\n' "${COMPREPLY[@]}"`, path, strings.Join(words, " "), len(words)-1)
		out, err := exec.Command("bash", "-c", script).CombinedOutput()
		if err != nil {
			t.Fatalf("completing %v: %v\n%s", words, err, out)
		}
		return strings.Fields(string(out))
	}
	if got := complete("ctprobe", "tr"); strings.Join(got, " ") != "trace" {
		t.Errorf("ctprobe tr<TAB> offers %q, want trace", got)
	}
	if got := complete("ctprobe", "trace", "--time"); strings.Join(got, " ") != "--timeline" {
		t.Errorf("ctprobe trace --time<TAB> offers %q, want --timeline", got)
	}
	if got := complete("ctprobe", "completion", "z"); strings.Join(got, " ") != "zsh" {
		t.Errorf("ctprobe completion z<TAB> offers %q, want zsh", got)
	}

	// zsh parses its script and, with compinit, defines the completion.
	need(t, "zsh")
	zshScript := filepath.Join(t.TempDir(), "_ctprobe")
	if err := os.WriteFile(zshScript, []byte(scripts["zsh"]), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("zsh", "-n", zshScript).CombinedOutput(); err != nil {
		t.Errorf("zsh -n: %v\n%s", err, out)
	}
	zshLoad := fmt.Sprintf("autoload -U compinit && compinit -u -D && source %q && print -r -- $_comps[ctprobe]", zshScript)
	if out, err := exec.Command("zsh", "-f", "-c", zshLoad).CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "_ctprobe" {
		t.Errorf("zsh: loading the script does not register _ctprobe for ctprobe: %v\n%s", err, out)
	}

	// fish computes completions itself (complete -C).
	need(t, "fish")
	fishScript := filepath.Join(t.TempDir(), "ctprobe.fish")
	if err := os.WriteFile(fishScript, []byte(scripts["fish"]), 0o600); err != nil {
		t.Fatal(err)
	}
	fishComplete := func(line string) string {
		out, err := exec.Command("fish", "--no-config", "-c", fmt.Sprintf("source %q; complete -C %q", fishScript, line)).CombinedOutput()
		if err != nil {
			t.Fatalf("fish completing %q: %v\n%s", line, err, out)
		}
		return string(out)
	}
	if got := fishComplete("ctprobe tr"); !strings.HasPrefix(got, "trace\t") || strings.Count(got, "\n") != 1 {
		t.Errorf("fish: ctprobe tr<TAB> offers %q, want trace", got)
	}
	if got := fishComplete("ctprobe trace --time"); !strings.HasPrefix(got, "--timeline\t") {
		t.Errorf("fish: ctprobe trace --time<TAB> offers %q, want --timeline", got)
	}
}

// need installs tool's Debian package (scripts/deps.sh) when it is missing.
func need(t *testing.T, tool string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err == nil {
		return
	}
	if out, err := exec.Command("../../scripts/deps.sh", tool).CombinedOutput(); err != nil {
		t.Fatalf("installing %s: %v\n%s", tool, err, out)
	}
}

// docs/ctprobe.8 is what "ctprobe man" writes (make man), and groff
// renders it without a warning.
func TestManPage(t *testing.T) {
	code, page, _ := runCLI("man")
	if code != 0 {
		t.Fatalf("man: exit %d", code)
	}
	golden(t, "../../docs/ctprobe.8", page)
	need(t, "groff")
	cmd := exec.Command("groff", "-man", "-Tutf8", "-ww")
	cmd.Stdin = strings.NewReader(page)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("groff: %v\n%s", err, stderr.String())
	}
	// Backspace overstrikes (bold, underline) aside, the flags read as typed.
	text := regexpOverstrike(stdout.String())
	for _, want := range []string{"ctprobe trace", "--timeline", "-r FILE", "NO_COLOR", "exit status"} {
		if !strings.Contains(text, want) {
			t.Errorf("the rendered man page lacks %q", want)
		}
	}
}

// regexpOverstrike drops groff's overstrikes ("x\bx" bold, "_\bx" underline).
func regexpOverstrike(s string) string {
	var b strings.Builder
	r := []rune(s)
	for i := 0; i < len(r); i++ {
		if i+2 < len(r) && r[i+1] == '\b' {
			continue
		}
		if r[i] == '\b' {
			continue
		}
		b.WriteRune(r[i])
	}
	return b.String()
}

// version names the running kernel (as uname -r does) and the format
// versions this ctprobe writes.
func TestVersion(t *testing.T) {
	release, err := exec.Command("uname", "-r").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("ctprobe %s\nkernel %s\ncapture format %d\nJSON schema %d\n", version, strings.TrimSpace(string(release)), capture.Version, render.SchemaVersion)
	for _, args := range [][]string{{"version"}, {"--version"}} {
		if code, out, _ := runCLI(args...); code != 0 || out != want {
			t.Errorf("%v: exit %d, %q, want %q", args, code, out, want)
		}
	}
}

// openPTY returns a terminal's two ends: output written to tty is read from
// master.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// On a terminal, report colours its output unless --no-color, or NO_COLOR
// is set and not empty (https://no-color.org).
func TestNoColor(t *testing.T) {
	for _, c := range []struct {
		noColor string
		flag    bool
		colour  bool
	}{{"", false, true}, {"1", false, false}, {"", true, false}} {
		t.Setenv("NO_COLOR", c.noColor)
		master, tty := openPTY(t)
		read := make(chan string)
		go func() {
			var b bytes.Buffer
			buf := make([]byte, 4096)
			for {
				n, err := master.Read(buf)
				b.Write(buf[:n])
				if err != nil || bytes.Contains(b.Bytes(), []byte("\n__end__")) {
					break
				}
			}
			read <- b.String()
		}()
		args := []string{"report", "-r", "testdata/vm-6.12-timeline.ctp"}
		if c.flag {
			args = append(args, "--no-color")
		}
		if code := run(args, tty, io.Discard); code != 0 {
			t.Fatalf("%v: exit %d", args, code)
		}
		fmt.Fprint(tty, "\n__end__\n")
		out := <-read
		if got := strings.Contains(out, "\x1b["); got != c.colour {
			t.Errorf("NO_COLOR=%q, %v: coloured %v, want %v", c.noColor, args, got, c.colour)
		}
	}
}

// make install puts ctprobe and its man page under DESTDIR/PREFIX, and the
// installed binary runs.
func TestMakeInstall(t *testing.T) {
	root := t.TempDir()
	make := exec.Command("make", "-C", "../..", "install", "DESTDIR="+root, "PREFIX=/usr")
	if out, err := make.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	page, err := os.ReadFile(filepath.Join(root, "usr/share/man/man8/ctprobe.8"))
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile("../../docs/ctprobe.8")
	if err != nil || !bytes.Equal(page, committed) {
		t.Errorf("the installed man page is not docs/ctprobe.8 (%v)", err)
	}
	out, err := exec.Command(filepath.Join(root, "usr/bin/ctprobe"), "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "ctprobe ") {
		t.Errorf("installed ctprobe version: %v, %q", err, out)
	}
}
