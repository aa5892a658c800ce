package capture

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readCaptureFile reads the capture at path to its end: the number of
// records and the error that ended them.
func readCaptureFile(t *testing.T, path string) (int, error) {
	t.Helper()
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	return readAll(t, r, testItems(false))
}

// noTemporaryFiles fails if Create left anything but want in dir.
func noTemporaryFiles(t *testing.T, dir string, want ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("directory holds %q, want %q", names, want)
	}
}

// A new capture is 0600 and owned by whoever runs ctprobe, and is a
// readable capture at its name as soon as Create returns: a trace killed at
// any later point leaves a truncated capture there, not an empty file or a
// temporary name.
func TestCreateNew(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "new.ctp")
	old := syscall.Umask(0)
	w, err := Create(path, testHeader(), CreateOptions{})
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 || int(st.Uid) != os.Geteuid() {
		t.Errorf("capture is %v, owner %d; want a regular file 0600 owned by %d", fi.Mode(), st.Uid, os.Geteuid())
	}
	noTemporaryFiles(t, dir, "new.ctp")
	r, err := Open(path)
	if err != nil {
		t.Fatalf("capture unreadable before Close: %v", err)
	}
	if _, err := r.Next(); !errors.Is(err, ErrTruncated) {
		t.Errorf("capture before Close: %v, want a truncated capture", err)
	}
	r.Close()
	writeItems(t, w, testItems(false))
	if err := w.Close(Trailer{}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(Trailer{}); err == nil {
		t.Error("second Close succeeded")
	}
	if n, err := readCaptureFile(t, path); err != io.EOF || n != len(testItems(false)) {
		t.Errorf("%d records, %v", n, err)
	}
	if _, err := Create(filepath.Join(dir, "no", "such", "dir"), Header{}, CreateOptions{}); err == nil {
		t.Error("Create in a missing directory succeeded")
	}
}

// What another user may plant at the capture's name in a shared directory
// is never written through, truncated, chmodded or opened, with or without
// Overwrite, and the error says what is there.
func TestCreatePlanted(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "victim")
	const victim = "must stay as it is"
	if err := os.WriteFile(target, []byte(victim), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(target, 0o644)
	for _, c := range []struct {
		name  string
		plant func(path string) error
		kind  string
	}{
		{"symlink", func(p string) error { return os.Symlink(target, p) }, "a symlink"},
		{"dangling symlink", func(p string) error { return os.Symlink(filepath.Join(dir, "nowhere"), p) }, "a symlink"},
		// A FIFO with no reader: opening it for writing would block.
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o666) }, "a FIFO"},
		{"directory", func(p string) error { return os.Mkdir(p, 0o755) }, "a directory"},
	} {
		for _, overwrite := range []bool{false, true} {
			sub := filepath.Join(dir, c.name+map[bool]string{false: "", true: "-overwrite"}[overwrite])
			os.Mkdir(sub, 0o755)
			path := filepath.Join(sub, "x.ctp")
			if err := c.plant(path); err != nil {
				t.Fatal(err)
			}
			before, _ := os.Lstat(path)
			done := make(chan error, 1)
			go func() {
				_, err := Create(path, testHeader(), CreateOptions{Overwrite: overwrite})
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: Create blocked", c.name)
			}
			if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), c.kind) || !strings.Contains(err.Error(), path) {
				t.Errorf("%s (overwrite %v): %v; want ErrNotRegular naming %s and the path", c.name, overwrite, err, c.kind)
			}
			if err := CheckCreate(path, CreateOptions{Overwrite: overwrite}); !errors.Is(err, ErrNotRegular) {
				t.Errorf("%s: CheckCreate: %v", c.name, err)
			}
			after, _ := os.Lstat(path)
			if after == nil || after.Mode() != before.Mode() || !os.SameFile(before, after) {
				t.Errorf("%s: what was planted changed: %v -> %v", c.name, before.Mode(), after)
			}
			noTemporaryFiles(t, sub, "x.ctp")
		}
	}
	if b, err := os.ReadFile(target); err != nil || string(b) != victim {
		t.Errorf("symlink target now holds %q, %v", b, err)
	}
	if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o644 {
		t.Errorf("symlink target's mode changed to %v", fi.Mode())
	}
}

// An existing regular file is refused unless Overwrite is given; then the
// capture is a new file under the name, so the old file's owner, mode and
// open descriptors never see it.
func TestCreateExisting(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "old.ctp")
	const old = "someone else's file"
	if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o644)
	if os.Geteuid() == 0 {
		os.Chown(path, 65534, 65534) // planted by nobody
	}
	if _, err := Create(path, testHeader(), CreateOptions{}); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), path) {
		t.Errorf("existing file: %v, want ErrExists naming the path", err)
	}
	if err := CheckCreate(path, CreateOptions{}); !errors.Is(err, ErrExists) {
		t.Errorf("CheckCreate: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != old {
		t.Fatalf("refused Create changed the file: %q", b)
	}
	noTemporaryFiles(t, dir, "old.ctp")

	// Its owner still has it open.
	held, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := CheckCreate(path, CreateOptions{Overwrite: true}); err != nil {
		t.Errorf("CheckCreate with Overwrite: %v", err)
	}
	w, err := Create(path, testHeader(), CreateOptions{Overwrite: true})
	if err != nil {
		t.Fatal(err)
	}
	writeItems(t, w, testItems(false))
	if err := w.Close(Trailer{}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o600 || int(st.Uid) != os.Geteuid() {
		t.Errorf("overwritten capture: mode %v owner %d, want 0600 owned by %d", fi.Mode().Perm(), st.Uid, os.Geteuid())
	}
	if b, _ := io.ReadAll(held); string(b) != old {
		t.Errorf("the old file's open descriptor reads %q", b)
	}
	if n, err := readCaptureFile(t, path); err != io.EOF || n != len(testItems(false)) {
		t.Errorf("%d records, %v", n, err)
	}
	noTemporaryFiles(t, dir, "old.ctp")
}

// A failed Create leaves no temporary file behind.
func TestCreateFailureCleansUp(t *testing.T) {
	dir := t.TempDir()
	_, err := Create(filepath.Join(dir, "big.ctp"), Header{Extra: map[string]string{"x": strings.Repeat("a", MaxPayload)}}, CreateOptions{})
	if err == nil {
		t.Fatal("oversized header accepted")
	}
	noTemporaryFiles(t, dir)
	for _, bad := range []string{dir + "/", filepath.Join(dir, "..")} {
		if _, err := Create(bad, Header{}, CreateOptions{}); err == nil {
			t.Errorf("Create(%q) succeeded", bad)
		}
	}
	var buf bytes.Buffer
	if _, err := createWith("-", testHeader(), CreateOptions{}, &buf); err != nil || buf.Len() == 0 {
		t.Errorf("stdout: %v", err)
	}
}
