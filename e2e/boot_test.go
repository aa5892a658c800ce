package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func repoRoot(t *testing.T) string {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out.String()
}

// kernelDir skips the test unless VM tests are asked for, and fetches the
// kernel of FLAVOUR (cloud by default); KERNEL_ARCH (amd64 or arm64),
// KERNEL_SUITE (a Debian suite) and KERNEL_SERIES (6.1) pick others
// (scripts/vm/fetch-kernel.sh).
func kernelDir(t *testing.T, root string) (kdir, flavour string) {
	if os.Getenv("CTPROBE_E2E") == "" {
		t.Skip("boots a VM: run with CTPROBE_E2E=1 (make e2e)")
	}
	flavour = os.Getenv("FLAVOUR")
	if flavour == "" {
		flavour = "cloud"
	}
	lines := strings.Split(strings.TrimSpace(run(t, root, nil, "scripts/vm/fetch-kernel.sh", flavour)), "\n")
	return lines[len(lines)-1], flavour
}

// bootLab boots the VM once for all scenarios (e2e/guest.sh) and returns
// the directory holding what the guest wrote.
func bootLab(t *testing.T) string {
	var args []string
	var names, unjudged []string
	for _, s := range scenarios {
		names = append(names, s.name)
		if !judgedByDoctor(s.name) {
			unjudged = append(unjudged, s.name)
		}
		args = append(args, "--env", "LOOKUPS_"+strings.ReplaceAll(files(s.name), "-", "_")+"="+strconv.Itoa(s.lookups))
	}
	var modeNames []string
	for _, m := range modes {
		modeNames = append(modeNames, m.name)
	}
	args = append(args, "--env", "SCENARIOS="+strings.Join(names, ","), "--env", "MODES="+strings.Join(modeNames, ","))
	if len(unjudged) > 0 {
		args = append(args, "--env", "NOT_JUDGED="+strings.Join(unjudged, ","))
	}
	return bootGuest(t, "e2e/guest.sh", "", args...)
}

// bootGuest builds static binaries for the kernel's architecture and an
// initramfs running script, boots the VM (run.sh's extra args) and returns
// the directory holding what the guest wrote:
// out/e2e-FLAVOUR[-ARCH][-SUITE][-SERIES][-suffix].
func bootGuest(t *testing.T, script, suffix string, extra ...string) string {
	return bootGuestWith(t, guestImage{script: script, suffix: suffix}, extra...)
}

// guestImage is what a guest's initramfs holds besides ctprobe and ctlab.
type guestImage struct {
	script, suffix string
	// initramfs are more build-initramfs.sh arguments (--add, --prog);
	// env its environment (VM_EXTRA_MODULES).
	initramfs, env []string
}

// bootGuestWith is bootGuest with more in the initramfs.
func bootGuestWith(t *testing.T, img guestImage, extra ...string) string {
	root := repoRoot(t)
	kdir, flavour := kernelDir(t, root)
	tmp := t.TempDir()
	static := []string{"CGO_ENABLED=0", "GOARCH=" + readFile(t, filepath.Join(kdir, "arch"))}
	run(t, root, static, "go", "build", "-o", filepath.Join(tmp, "ctprobe"), "./cmd/ctprobe")
	run(t, root, static, "go", "build", "-o", filepath.Join(tmp, "ctlab"), "./cmd/ctlab")
	initrd := filepath.Join(tmp, "initrd.cpio.gz")
	args := []string{"--kernel-dir", kdir, "--out", initrd,
		"--add", filepath.Join(tmp, "ctprobe") + ":/bin/ctprobe", "--add", filepath.Join(tmp, "ctlab") + ":/bin/ctlab",
		"--run", img.script}
	run(t, root, img.env, "scripts/vm/build-initramfs.sh", append(args, img.initramfs...)...)
	name := "e2e-" + flavour
	for _, v := range []string{"KERNEL_ARCH", "KERNEL_SUITE", "KERNEL_SERIES"} {
		if s := os.Getenv(v); s != "" {
			name += "-" + s
		}
	}
	if img.suffix != "" {
		name += "-" + img.suffix
	}
	out := filepath.Join(root, "out", name)
	runArgs := append([]string{"--kernel-dir", kdir, "--initrd", initrd, "--out", out, "--timeout", "1500"}, extra...)
	cmd := exec.Command("scripts/vm/run.sh", runArgs...)
	cmd.Dir = root
	cmd.Stdout = os.Stdout // the guest's console, live
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("VM run failed: %v (serial log: %s)", err, filepath.Join(out, "serial.log"))
	}
	t.Logf("guest output in %s", out)
	return out
}

// A guest kernel that panics before /init ran is booted again, twice at
// most (TCG can fault in the kernel's own boot-time code patching), and
// then reported as a panic. An initramfs that is not one makes every boot
// panic there ("Unable to mount root fs").
func TestVMBootPanicRetried(t *testing.T) {
	// run.sh's retry does not depend on the kernel: the default one proves it.
	if os.Getenv("KERNEL_SERIES") != "" || os.Getenv("FLAVOUR") != "" && os.Getenv("FLAVOUR") != "cloud" {
		t.Skip("runs on the default kernel (make e2e)")
	}
	root := repoRoot(t)
	kdir, _ := kernelDir(t, root)
	tmp := t.TempDir()
	initrd := filepath.Join(tmp, "not-an-initramfs")
	if err := os.WriteFile(initrd, bytes.Repeat([]byte("ctprobe"), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, "out")
	cmd := exec.Command("scripts/vm/run.sh", "--kernel-dir", kdir, "--initrd", initrd, "--out", out, "--timeout", "120")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 125 {
		t.Fatalf("run.sh: %v; want exit code 125\n%s", err, stderr.String())
	}
	if n := strings.Count(stderr.String(), "booting again"); n != 2 {
		t.Errorf("%d retries announced, want 2:\n%s", n, stderr.String())
	}
	if !strings.Contains(stderr.String(), "guest kernel panicked") {
		t.Errorf("the last boot's panic is not reported:\n%s", stderr.String())
	}
	for _, f := range []string{"serial.boot-1.log", "serial.boot-2.log", "serial.log"} {
		if b, err := os.ReadFile(filepath.Join(out, f)); err != nil || !bytes.Contains(b, []byte("Kernel panic")) {
			t.Errorf("%s: %v; want a console with the panic", f, err)
		}
	}
}

// run.sh runs a VM again only for a panic that is the emulator's: a trap on
// an int3 no longer in the code. The console kept from a make test run
// (Debian's 7.2.13 under TCG, in the lab's kprobe scenario: __schedule's
// static branch, nop5 back under the trap) is one; the same console with
// the int3 still in place, and a panic of another kind, are not.
func TestStaleInt3Classified(t *testing.T) {
	root := repoRoot(t)
	stale, err := os.ReadFile(filepath.Join(root, "e2e/testdata/stale-int3.serial.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(stale, []byte("0f <1f>")) {
		t.Fatal("the kept console lost its trap site")
	}
	dir := t.TempDir()
	for _, c := range []struct {
		name    string
		console []byte
		stale   bool
	}{
		{"int3 gone", stale, true},
		{"int3 gone, older kernels' oops", bytes.Replace(stale, []byte("Oops: int3"), []byte("int3"), 1), true},
		{"int3 still there", bytes.Replace(stale, []byte("0f <1f>"), []byte("cc <1f>"), 1), false},
		{"another panic", []byte("[    1.2] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n"), false},
	} {
		log := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".log")
		if err := os.WriteFile(log, c.console, 0o644); err != nil {
			t.Fatal(err)
		}
		err := exec.Command(filepath.Join(root, "scripts/vm/stale-int3.sh"), log).Run()
		var exit *exec.ExitError
		switch {
		case c.stale && err != nil:
			t.Errorf("%s: %v, want exit 0", c.name, err)
		case !c.stale && (!errors.As(err, &exit) || exit.ExitCode() != 1):
			t.Errorf("%s: %v, want exit 1", c.name, err)
		}
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// jsonLines reads a ctprobe -o json stream: the raw lines and their kinds.
func jsonLines(t *testing.T, path string) (raw []string, parsed []map[string]any) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: not JSON: %q", path, sc.Text())
		}
		raw = append(raw, sc.Text())
		parsed = append(parsed, m)
	}
	return raw, parsed
}
