package capture

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// readFile reads a capture file whole: its header, samples and trailer.
func readFile(t *testing.T, path string) (Header, [][]byte, *Trailer) {
	t.Helper()
	rd, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var samples [][]byte
	for {
		rec, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if rec.Type == TypeSample {
			samples = append(samples, slices.Clone(rec.Raw))
		}
	}
	return rd.Header(), samples, rd.Trailer()
}

func captureFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

// A rotated capture is numbered files of about the rotation size, each a
// whole capture (header, records, trailer) with the header and trailer it
// was given; together they hold every record, in order; the oldest beyond
// the count are removed.
func TestRotation(t *testing.T) {
	dir := t.TempDir()
	rot := Rotation{Size: 4096, Count: 3}
	r, err := CreateRotating(filepath.Join(dir, "ctprobe.ctp"), rot, Header{Hostname: "file1", RecordSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	var written [][]byte
	files := 1
	for i := range 500 {
		raw := make([]byte, 100)
		raw[0], raw[1] = byte(i), byte(i>>8)
		if err := r.WriteRecord(uint64(i), raw); err != nil {
			t.Fatal(err)
		}
		written = append(written, raw)
		if r.Due() {
			files++
			if err := r.Rotate(Trailer{EndUnixNano: int64(i)}, Header{Hostname: fmt.Sprintf("file%d", files), RecordSize: 100}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := r.Close(Trailer{EndUnixNano: 999}); err != nil {
		t.Fatal(err)
	}
	got := captureFiles(t, dir)
	var want []string
	for seq := files - 2; seq <= files; seq++ {
		want = append(want, fmt.Sprintf("ctprobe.%06d.ctp", seq))
	}
	if files < 4 || len(got) != 3 {
		t.Fatalf("%d files written, %v kept; want more than 3 written and %v kept", files, got, want)
	}
	var kept [][]byte
	for i, path := range got {
		if filepath.Base(path) != want[i] {
			t.Errorf("file %d is %s, want %s", i, filepath.Base(path), want[i])
		}
		hdr, samples, tr := readFile(t, path)
		if tr == nil {
			t.Errorf("%s has no trailer", path)
		} else if tr.Records != uint64(len(samples)) {
			t.Errorf("%s: trailer says %d records, holds %d", path, tr.Records, len(samples))
		}
		if wantHost := fmt.Sprintf("file%d", files-2+i); hdr.Hostname != wantHost {
			t.Errorf("%s: header of %q, want %q", path, hdr.Hostname, wantHost)
		}
		if fi, _ := os.Stat(path); i < 2 && (fi.Size() < rot.Size || fi.Size() > rot.Size+200) {
			t.Errorf("%s: %d bytes, want about %d", path, fi.Size(), rot.Size)
		}
		kept = append(kept, samples...)
	}
	if tail := written[len(written)-len(kept):]; !slices.EqualFunc(kept, tail, slices.Equal) {
		t.Error("the kept files do not hold the last records written, in order")
	}
}

// An agent that restarts goes on after the files of its last run, without
// overwriting them, and counts them among those it keeps.
func TestRotationRestart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "trace")
	for _, name := range []string{"trace.000007", "trace.000002", "trace.7", "trace.00000x", "other.000009"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("earlier"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r, err := CreateRotating(path, Rotation{Size: 1 << 20, Count: 2}, Header{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(Trailer{}); err != nil {
		t.Fatal(err)
	}
	if r.Path() != filepath.Join(dir, "trace.000008") {
		t.Errorf("the new file is %s, want trace.000008", r.Path())
	}
	var names []string
	for _, p := range captureFiles(t, dir) {
		names = append(names, filepath.Base(p))
	}
	// trace.000002 was the oldest of three.
	want := []string{"other.000009", "trace.000007", "trace.000008", "trace.00000x", "trace.7"}
	if !slices.Equal(names, want) {
		t.Errorf("files %v, want %v", names, want)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "trace.000007")); string(b) != "earlier" {
		t.Error("the last run's newest capture was changed")
	}
}

// A directory that cannot hold the capture is one error that names it.
func TestRotationBadDirectory(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		filepath.Join(dir, "missing", "ctprobe.ctp"): "capture directory: open " + filepath.Join(dir, "missing") + ": no such file or directory",
		filepath.Join(notDir, "ctprobe.ctp"):         "capture directory: open " + notDir + ": not a directory",
		filepath.Join(dir, ".ctp"):                   filepath.Join(dir, ".ctp") + ": want a file name to number, such as DIR/ctprobe.ctp",
	} {
		_, err := CreateRotating(path, Rotation{Size: 1 << 20}, Header{})
		if err == nil || err.Error() != want || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want %q", path, err, want)
		}
	}
}
