package capture

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Rotation splits a capture into files of about Size bytes and keeps the
// Count newest, like tcpdump's -C and -W.
type Rotation struct {
	// Size is the size at which a file is due to be closed (Rotator.Due).
	Size int64
	// Count is how many files are kept, the one being written included;
	// older ones are removed. 0 keeps every file.
	Count int
}

// seqDigits is the width of a file's number: names sort by number.
const seqDigits = 6

// Rotator writes a capture as numbered files: for path dir/ctprobe.ctp,
// dir/ctprobe.000001.ctp, dir/ctprobe.000002.ctp and so on. Each file is a
// whole capture, header to trailer, that `ctprobe report` reads alone. A
// Rotator started where files of an earlier run are goes on after their
// numbers and counts them among the Count it keeps, so that an agent that
// restarts neither overwrites the last run's captures nor fills the disk.
//
// The caller decides when to rotate (Due, Rotate): a file should end
// where no incident is in the making, so that none is split between two.
type Rotator struct {
	dir, stem, ext string
	rot            Rotation
	w              *Writer
	// files are the capture files, oldest first; the last is being written.
	files []rotated
}

type rotated struct {
	seq  int
	path string
}

// CreateRotating creates the first file of a rotated capture at path's
// place, with header h.
func CreateRotating(path string, rot Rotation, h Header) (*Rotator, error) {
	if rot.Size <= 0 || rot.Count < 0 {
		return nil, fmt.Errorf("rotation: size %d and count %d: want a positive size and a count of 0 or more", rot.Size, rot.Count)
	}
	dir, base := filepath.Dir(path), filepath.Base(path)
	ext := filepath.Ext(base)
	r := &Rotator{dir: dir, stem: strings.TrimSuffix(base, ext), ext: ext, rot: rot}
	if r.stem == "" {
		return nil, fmt.Errorf("%s: want a file name to number, such as DIR/ctprobe.ctp", path)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("capture directory: %w", err)
	}
	for _, e := range entries {
		if seq, ok := r.seqOf(e.Name()); ok && e.Type().IsRegular() {
			r.files = append(r.files, rotated{seq, filepath.Join(dir, e.Name())})
		}
	}
	slices.SortFunc(r.files, func(a, b rotated) int { return a.seq - b.seq })
	if err := r.open(h); err != nil {
		return nil, err
	}
	return r, nil
}

// seqOf parses a file name of this capture: stem.NNNNNN.ext.
func (r *Rotator) seqOf(name string) (int, bool) {
	num, ok := strings.CutPrefix(name, r.stem+".")
	if num, ok = strings.CutSuffix(num, r.ext); !ok || len(num) < seqDigits {
		return 0, false
	}
	seq, err := strconv.Atoi(num)
	return seq, err == nil && seq > 0 && strconv.Itoa(seq) == strings.TrimLeft(num, "0")
}

// open removes the oldest files beyond Count, then creates the next one.
func (r *Rotator) open(h Header) error {
	for r.rot.Count > 0 && len(r.files) >= r.rot.Count {
		if err := os.Remove(r.files[0].path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove the oldest capture: %w", err)
		}
		r.files = r.files[1:]
	}
	seq := 1
	if n := len(r.files); n > 0 {
		seq = r.files[n-1].seq + 1
	}
	path := filepath.Join(r.dir, fmt.Sprintf("%s.%0*d%s", r.stem, seqDigits, seq, r.ext))
	// The number is new: nothing is ever replaced.
	w, err := Create(path, h, CreateOptions{})
	if err != nil {
		return err
	}
	r.w = w
	r.files = append(r.files, rotated{seq, path})
	return nil
}

// Path is the file being written.
func (r *Rotator) Path() string { return r.files[len(r.files)-1].path }

// Due says that the file being written reached the rotation size.
func (r *Rotator) Due() bool { return r.w.Size() >= r.rot.Size }

// Overdue says that the file reached twice the rotation size: rotate even
// mid-incident, so that a file stays bounded.
func (r *Rotator) Overdue() bool { return r.w.Size() >= 2*r.rot.Size }

// Rotate closes the file being written with trailer t and starts the next
// one with header next.
func (r *Rotator) Rotate(t Trailer, next Header) error {
	if err := r.w.Close(t); err != nil {
		return err
	}
	return r.open(next)
}

// WriteRecord writes to the file being written (Writer.WriteRecord).
func (r *Rotator) WriteRecord(ts uint64, raw []byte) error { return r.w.WriteRecord(ts, raw) }

// WriteLost writes to the file being written (Writer.WriteLost).
func (r *Rotator) WriteLost(cpu int, count uint64, kind string) error {
	return r.w.WriteLost(cpu, count, kind)
}

// Close closes the file being written with trailer t.
func (r *Rotator) Close(t Trailer) error { return r.w.Close(t) }
