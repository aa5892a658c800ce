package probe

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// needTool skips locally but fails in CI, where scripts/deps.sh installs it.
func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not installed: run scripts/deps.sh", name)
		}
		t.Skipf("%s not installed (scripts/deps.sh installs it)", name)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// bpfSources lists every C source and header under bpf/, relative to root:
// the object is built from all of them, so a stale one must fail the test too.
func bpfSources(t *testing.T, root string) []string {
	t.Helper()
	var files []string
	for _, pattern := range []string{"bpf/*.c", "bpf/*.h"} {
		matches, err := filepath.Glob(filepath.Join(root, filepath.FromSlash(pattern)))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range matches {
			rel, err := filepath.Rel(root, m)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, rel)
		}
	}
	if len(files) == 0 {
		t.Fatal("no C sources under bpf/")
	}
	return files
}

// generated is bpf2go's output, one Go file and one object per target of
// gen.go (amd64 and arm64).
var generated = []string{"bpf_x86_bpfel.go", "bpf_x86_bpfel.o", "bpf_arm64_bpfel.go", "bpf_arm64_bpfel.o"}

// The committed bpf2go output must be what `make generate` produces from the
// committed C sources and vmlinux.h.
func TestGeneratedCodeUpToDate(t *testing.T) {
	needTool(t, "clang-16")
	needTool(t, "llvm-strip-16")
	root := filepath.Join("..", "..")
	tmp := t.TempDir()
	files := append([]string{"go.mod", "go.sum", "vmlinux/vmlinux.h", "tracer/probe/gen.go"}, bpfSources(t, root)...)
	for _, f := range files {
		copyFile(t, filepath.Join(root, f), filepath.Join(tmp, f))
	}
	cmd := exec.Command("go", "generate", ".")
	cmd.Dir = filepath.Join(tmp, "tracer", "probe")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go generate: %v\n%s", err, out)
	}
	for _, f := range generated {
		want, _ := os.ReadFile(filepath.Join(tmp, "tracer", "probe", f))
		got, _ := os.ReadFile(f)
		if !bytes.Equal(got, want) {
			t.Errorf("tracer/probe/%s is stale: run `make generate` and commit the result", f)
		}
	}
}

// vmlinux.h is generated from the BTF of the kernel named in vmlinux/KERNEL;
// on that kernel it must match what bpftool dumps now.
func TestVmlinuxHeaderUpToDate(t *testing.T) {
	root := filepath.Join("..", "..")
	release, err := os.ReadFile(filepath.Join(root, "vmlinux", "KERNEL"))
	if err != nil {
		t.Fatal(err)
	}
	running, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(release)) != strings.TrimSpace(string(running)) {
		t.Skipf("vmlinux.h comes from %s; this is %s", strings.TrimSpace(string(release)), strings.TrimSpace(string(running)))
	}
	needTool(t, "bpftool")
	out, err := exec.Command("bpftool", "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "c").Output()
	if err != nil {
		t.Fatalf("bpftool: %v", err)
	}
	committed, err := os.ReadFile(filepath.Join(root, "vmlinux", "vmlinux.h"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, committed) {
		t.Error("vmlinux/vmlinux.h is stale: run `make generate` and commit the result")
	}
}
