package deploy

import (
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func output(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr)
	}
	return out
}

// `make image` builds an OCI image from scratch: tagged with the version
// and with the DaemonSet's tag, for amd64, entrypoint ctprobe as root, one
// layer that holds the static binary alone; and that binary accepts the
// DaemonSet's arguments.
func TestImage(t *testing.T) {
	output(t, "../scripts/deps.sh", "skopeo", "umoci")
	const skopeo, umoci = "skopeo", "umoci"
	layout := filepath.Join(t.TempDir(), "image")
	const version = "v0.0.0-test.1"
	output(t, "../scripts/image.sh", "--arch", "amd64", "--version", version, "--out", layout)

	var cfg struct {
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
		Config       struct {
			User       string            `json:"User"`
			Entrypoint []string          `json:"Entrypoint"`
			Cmd        []string          `json:"Cmd"`
			Labels     map[string]string `json:"Labels"`
		} `json:"config"`
	}
	_, tag, _ := strings.Cut(image, ":")
	for _, ref := range []string{version, tag} {
		if err := json.Unmarshal(output(t, skopeo, "inspect", "--config", "oci:"+layout+":"+ref), &cfg); err != nil {
			t.Fatal(err)
		}
		c := cfg.Config
		if cfg.Architecture != "amd64" || cfg.OS != "linux" || c.User != "0:0" || !slices.Equal(c.Entrypoint, []string{"/usr/bin/ctprobe"}) ||
			!slices.Equal(c.Cmd, []string{"trace"}) || c.Labels["org.opencontainers.image.version"] != version {
			t.Errorf("%s: config %+v", ref, cfg)
		}
	}
	var manifest struct {
		Layers []string `json:"Layers"`
	}
	if err := json.Unmarshal(output(t, skopeo, "inspect", "oci:"+layout+":"+tag), &manifest); err != nil {
		t.Fatal(err)
	}
	if len(manifest.Layers) != 1 {
		t.Errorf("%d layers, want 1: %v", len(manifest.Layers), manifest.Layers)
	}

	bundle := filepath.Join(t.TempDir(), "bundle")
	args := []string{"unpack", "--image", layout + ":" + tag, bundle}
	if os.Geteuid() != 0 {
		args = append([]string{"--rootless"}, args...)
	}
	output(t, umoci, args...)
	var files []string
	root := filepath.Join(bundle, "rootfs")
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, strings.TrimPrefix(p, root))
		}
		return err
	})
	if !slices.Equal(files, []string{"/usr/bin/ctprobe"}) {
		t.Errorf("the image holds %v, want the binary alone", files)
	}
	bin := filepath.Join(root, "usr/bin/ctprobe")
	// The first line of ctprobe version is its own; the kernel's and the
	// formats' follow.
	if got, _, _ := strings.Cut(string(output(t, bin, "version")), "\n"); got != "ctprobe "+version {
		t.Errorf("ctprobe version: first line %q, want %q", got, "ctprobe "+version)
	}
	// The DaemonSet's arguments parse: a negative duration after them, refused
	// as it is parsed, is the first and only complaint, before anything loads.
	ds := loadManifests(t).daemonSets[0].Spec.Template.Spec.Containers[0]
	out, err := exec.Command(bin, append(ds.Args, "--duration=-1s")...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), `invalid value "-1s" for flag -duration`) || strings.Count(string(out), "invalid") != 1 {
		t.Errorf("ctprobe %s: %v: %s", strings.Join(ds.Args, " "), err, out)
	}
}

// The arm64 image: the same config for linux/arm64, and its one file an
// arm64 executable (arm64 nodes run it; this machine cannot).
func TestImageArm64(t *testing.T) {
	output(t, "../scripts/deps.sh", "skopeo", "umoci")
	layout := filepath.Join(t.TempDir(), "image")
	const version = "v0.0.0-test.2"
	output(t, "../scripts/image.sh", "--arch", "arm64", "--version", version, "--out", layout)
	var cfg struct {
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
	}
	if err := json.Unmarshal(output(t, "skopeo", "inspect", "--config", "oci:"+layout+":"+version), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Architecture != "arm64" || cfg.OS != "linux" {
		t.Errorf("config: %+v, want linux/arm64", cfg)
	}
	bundle := filepath.Join(t.TempDir(), "bundle")
	args := []string{"unpack", "--image", layout + ":" + version, bundle}
	if os.Geteuid() != 0 {
		args = append([]string{"--rootless"}, args...)
	}
	output(t, "umoci", args...)
	f, err := elf.Open(filepath.Join(bundle, "rootfs/usr/bin/ctprobe"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != elf.EM_AARCH64 || f.Type != elf.ET_EXEC {
		t.Errorf("/usr/bin/ctprobe: %v %v, want a static arm64 executable", f.Machine, f.Type)
	}
}
