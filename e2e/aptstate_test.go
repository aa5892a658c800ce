package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The host's apt sources as apt reads them (APT_CONFIG moves Dir::Etc):
// one-line entries with options and comments, deb822 stanzas with several
// suites, a disabled stanza, backports, source and third-party entries (one
// with the host's codename but not Debian's component main).
var hostSources = map[string]string{
	"sources.list": `# deb http://old.example/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://mirror.example/debian bookworm main contrib
deb-src http://mirror.example/debian bookworm main
deb https://vendor.example/apt stable main
`,
	"sources.list.d/debian.sources": `Types: deb
# a snapshot comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb deb-src
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main

Enabled: no
Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://mirror.example/debian
Suites: bookworm-backports
Components: main contrib
`,
	"sources.list.d/vendor.list": "deb http://other.example/apt bookworm-extras main\ndeb http://docker.example/debian bookworm stable\n",
}

// aptState runs scripts/vm/apt-state.sh's apt_state for suite and arch on a
// host running Debian codename whose apt sources are files, and returns the
// sources.list it wrote (empty when it uses the host's own state) and what
// it printed on stderr.
func aptState(t *testing.T, codename, suite, arch string, files map[string]string) (sources, stderr string, err error) {
	t.Helper()
	tmp := t.TempDir()
	etc := filepath.Join(tmp, "etc")
	for name, text := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(etc, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(etc, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(tmp, "apt.conf")
	if err := os.WriteFile(conf, []byte(`Dir::Etc "`+etc+`/";`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `repo=$1; . "$2"; release=$3; host_codename() { echo "$release"; }
apt_state "$4" "$5" || exit 1
[ "${#apt_opts[@]}" -eq 0 ] || cat "$apt_state_dir/sources.list"`
	cmd := exec.Command("bash", "-c", script, "bash", tmp, filepath.Join(repoRoot(t), "scripts/vm/apt-state.sh"), codename, suite, arch)
	cmd.Env = append(os.Environ(), "APT_CONFIG="+conf)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// Another suite comes from the host's own Debian mirror, with the host's
// pockets of its release mapped onto it; sid has no pockets. The host's
// own suite and architecture keep the host's apt state.
func TestAptStateFromHostSources(t *testing.T) {
	if _, err := exec.LookPath("apt-config"); err != nil {
		t.Skip("not a Debian host: apt-config missing")
	}
	host, err := exec.Command("dpkg", "--print-architecture").Output()
	if err != nil {
		t.Fatal(err)
	}
	hostArch := strings.TrimSpace(string(host))
	for _, c := range []struct{ suite, arch, want string }{
		{"trixie", hostArch, `deb http://mirror.example/debian trixie main
deb http://mirror.example/debian trixie-updates main
deb http://security.example/debian-security trixie-security main
`},
		{"sid", hostArch, "deb http://mirror.example/debian sid main\n"},
		// Another architecture of the host's own suite.
		{"", "arm64", `deb http://mirror.example/debian bookworm main
deb http://mirror.example/debian bookworm-updates main
deb http://security.example/debian-security bookworm-security main
`},
		{"bookworm", hostArch, ""},
	} {
		if c.arch == "arm64" && hostArch == "arm64" {
			c.arch = "amd64"
		}
		got, stderr, err := aptState(t, "bookworm", c.suite, c.arch, hostSources)
		if err != nil {
			t.Errorf("%s %s: %v: %s", c.suite, c.arch, err, stderr)
			continue
		}
		if got != c.want {
			t.Errorf("%s %s: sources\n%s\nwant\n%s", c.suite, c.arch, got, c.want)
		}
	}
}

// A host whose apt sources have no Debian archive for its release cannot
// give a mirror: one line says what to add.
func TestAptStateWithoutDebianSource(t *testing.T) {
	if _, err := exec.LookPath("apt-config"); err != nil {
		t.Skip("not a Debian host: apt-config missing")
	}
	_, stderr, err := aptState(t, "bookworm", "trixie", "arm64", map[string]string{
		"sources.list": "deb https://vendor.example/apt stable main\n",
	})
	if err == nil {
		t.Fatal("apt_state succeeded without a Debian source")
	}
	if msg := strings.TrimSpace(stderr); strings.Count(msg, "\n") != 0 || !strings.Contains(msg, "add one (deb URI bookworm main)") {
		t.Errorf("want one line naming the fix, got %q", msg)
	}
}
