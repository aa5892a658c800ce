package capture

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// CreateOptions say how Create treats a file that already exists.
type CreateOptions struct {
	// Overwrite replaces an existing regular file. The capture is a new
	// file renamed over it, so that whoever holds the old one open, or a
	// hard link to it, never sees the capture. Without Overwrite an
	// existing file is refused (ErrExists).
	Overwrite bool
}

var (
	// ErrExists: the capture's path names an existing file and
	// CreateOptions.Overwrite was not set.
	ErrExists = errors.New("file exists")
	// ErrNotRegular: the capture's path names a symlink, FIFO, socket,
	// device or directory, which Create never writes through.
	ErrNotRegular = errors.New("not a regular file")
)

// Create creates the capture file path, mode 0600, and writes its header;
// path "-" writes to standard output, which Close flushes but does not
// close.
//
// ctprobe runs as root and is often pointed at shared directories such as
// /tmp, where another user may have planted the name first: a symlink (root
// would truncate its target), a file of theirs (which would keep its owner
// and mode, and be readable by them) or a FIFO (which would block the trace
// and hand the capture to its reader). So Create writes the preamble and
// header to a new file under a temporary name in the same directory
// (O_CREAT|O_EXCL|O_NOFOLLOW, so nothing planted is ever opened), syncs
// it, and then moves it to path with a rename that does not follow a
// symlink there and, without Overwrite, refuses to replace anything
// (renameat2 RENAME_NOREPLACE, else link(2)). The file at path is a
// readable capture from then on, so a trace that is killed leaves a
// truncated capture there, as the format intends; only a crash before the
// rename leaves the temporary file instead. Anything at path other than a
// regular file is refused, with Overwrite too.
func Create(path string, h Header, opt CreateOptions) (*Writer, error) {
	return createWith(path, h, opt, os.Stdout)
}

// createWith is Create with the stand-in for standard output as a
// parameter, so tests can check that "-" goes there.
func createWith(path string, h Header, opt CreateOptions, stdout io.Writer) (*Writer, error) {
	if path == "-" {
		return NewWriter(stdout, h)
	}
	dfd, dir, name, err := prepare(path, opt)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dfd)
	f, tmp, err := createTemp(dfd, dir, name)
	if err != nil {
		return nil, fmt.Errorf("create capture %s: %w", path, err)
	}
	w, err := NewWriter(f, h)
	if err == nil {
		// The name must never show a capture without its header, even
		// after a power loss.
		if err = f.Sync(); err != nil {
			err = fmt.Errorf("sync capture: %w", err)
		}
	}
	if err == nil {
		err = publish(dfd, tmp, name, opt.Overwrite)
	}
	if err != nil {
		unix.Unlinkat(dfd, tmp, 0)
		f.Close()
		return nil, fmt.Errorf("create capture %s: %w", path, err)
	}
	// The rename is only durable once the directory is.
	unix.Fsync(dfd)
	w.file = f
	return w, nil
}

// CheckCreate returns the error Create would return for what is at path
// now (a missing directory, a file that exists, something that is not a
// regular file), without creating anything: a caller with slow work to do
// before Create can fail first.
func CheckCreate(path string, opt CreateOptions) error {
	if path == "-" {
		return nil
	}
	dfd, _, _, err := prepare(path, opt)
	if err != nil {
		return err
	}
	unix.Close(dfd)
	return nil
}

// prepare opens the directory of path and checks what is at path
// (checkTarget). It returns the directory's descriptor, its name and the
// file name in it: every later step works on the descriptor, so that a
// directory renamed or replaced by a symlink meanwhile cannot send the
// capture elsewhere.
func prepare(path string, opt CreateOptions) (dfd int, dir, name string, err error) {
	dir, name = filepath.Split(path)
	if name == "" || name == "." || name == ".." {
		return -1, "", "", fmt.Errorf("create capture %s: not a file name", path)
	}
	if dir == "" {
		dir = "."
	}
	dfd, err = unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, "", "", fmt.Errorf("create capture %s: %w", path, &fs.PathError{Op: "open", Path: dir, Err: err})
	}
	if err := checkTarget(dfd, name, opt.Overwrite); err != nil {
		unix.Close(dfd)
		return -1, "", "", fmt.Errorf("create capture %s: %w", path, err)
	}
	return dfd, dir, name, nil
}

// checkTarget refuses what is at name before any work is done, with an
// error that says what it is; publish enforces the same rules atomically.
func checkTarget(dfd int, name string, overwrite bool) error {
	var st unix.Stat_t
	err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return &fs.PathError{Op: "stat", Path: name, Err: err}
	}
	if kind := fileKind(st.Mode); kind != "" {
		return fmt.Errorf("it is %s, %w", kind, ErrNotRegular)
	}
	if !overwrite {
		return ErrExists
	}
	return nil
}

// fileKind names a file type other than a regular file ("" for one).
func fileKind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return ""
	case unix.S_IFLNK:
		return "a symlink"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFCHR, unix.S_IFBLK:
		return "a device"
	}
	return "of an unknown type"
}

// createTemp creates a new file, mode 0600, beside name.
func createTemp(dfd int, dir, name string) (*os.File, string, error) {
	for range 100 {
		tmp := "." + name + ".tmp-" + strconv.FormatUint(rand.Uint64(), 36)
		fd, err := unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return nil, "", &fs.PathError{Op: "create", Path: filepath.Join(dir, tmp), Err: err}
		}
		return os.NewFile(uintptr(fd), filepath.Join(dir, tmp)), tmp, nil
	}
	return nil, "", fmt.Errorf("no free temporary name in %s", dir)
}

// publish moves tmp to name. rename(2) replaces a symlink at name rather
// than following it; without overwrite, RENAME_NOREPLACE (3.15+; not every
// file system has it) or link(2) fails with EEXIST instead of replacing.
func publish(dfd int, tmp, name string, overwrite bool) error {
	if overwrite {
		return renameError(unix.Renameat(dfd, tmp, dfd, name), name)
	}
	err := unix.Renameat2(dfd, tmp, dfd, name, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		if err = unix.Linkat(dfd, tmp, dfd, name, 0); err == nil {
			unix.Unlinkat(dfd, tmp, 0)
		}
	}
	return renameError(err, name)
}

func renameError(err error, name string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("%w (created meanwhile)", ErrExists)
	}
	return &fs.PathError{Op: "rename to", Path: name, Err: err}
}
