package results

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

// StdoutName is the output name that means standard output, as in most
// Unix tools.
const StdoutName = "-"

// Sentinel errors of outputs, wrapped with the path and the reason.
var (
	// ErrOutputIsDir: the output names an existing directory. A run
	// checks for it before it starts, so no record is lost at the end.
	ErrOutputIsDir = errors.New("output is a directory")
	// ErrOutputUnwritable: the output cannot be created or written (its
	// directory is read-only, a path component is a file, ...).
	ErrOutputUnwritable = errors.New("output cannot be written")
)

// newFileMode is the mode of an output file closeload creates, before the
// umask: readable by all, writable by the owner only. Even under umask 000
// no output is world-writable.
const newFileMode fs.FileMode = 0o644

// SavedElsewhere is the error of a write that failed at its target but
// kept the data in another file: the run's record is not lost, and the
// error says where it went. Match it with errors.As.
type SavedElsewhere struct {
	// Target is the output that could not be written.
	Target string
	// Path is the file that holds the data instead.
	Path string
	// Err is why Target could not be written.
	Err error
}

func (e *SavedElsewhere) Error() string {
	return fmt.Sprintf("%v; the data was saved in %s instead", e.Err, e.Path)
}

func (e *SavedElsewhere) Unwrap() error { return e.Err }

// CheckOutput tells, before a run starts, whether path can take its output
// at the end: "-" always can; an existing directory is refused
// (ErrOutputIsDir); a regular file or a new name needs a directory
// closeload may create files in; a device, pipe or other special file
// needs write permission. It leaves nothing behind (it creates no
// directory; a probe file it creates is removed at once).
func CheckOutput(path string) error {
	if path == StdoutName {
		return nil
	}
	if path == "" {
		return fmt.Errorf("%w: empty name (use a file name, or - for standard output)", ErrOutputUnwritable)
	}
	fi, err := os.Stat(path) // follows a symlink: its target is what gets written
	switch {
	case err == nil && fi.IsDir():
		return fmt.Errorf("%w: %s (name a file in it instead)", ErrOutputIsDir, path)
	case err == nil && !fi.Mode().IsRegular():
		if !writable(path) {
			return fmt.Errorf("%w: %s: no write permission", ErrOutputUnwritable, path)
		}
		return nil
	case err == nil && isSymlink(path):
		// Written through: the link's target is opened, not replaced.
		if !writable(path) {
			return fmt.Errorf("%w: %s: no write permission on the file it links to", ErrOutputUnwritable, path)
		}
		return nil
	case err == nil:
		return probeDir(path, filepath.Dir(path))
	case errors.Is(err, fs.ErrNotExist):
		target := path
		if link, lerr := os.Readlink(path); lerr == nil {
			// A dangling link: writing through creates its target.
			if !filepath.IsAbs(link) {
				link = filepath.Join(filepath.Dir(path), link)
			}
			target = link
		}
		dir, err := existingAncestor(filepath.Dir(target))
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrOutputUnwritable, path, err)
		}
		return probeDir(path, dir)
	default:
		return fmt.Errorf("%w: %s: %v", ErrOutputUnwritable, path, err)
	}
}

// existingAncestor walks up from dir to the first path that exists, which
// must be a directory: the write would create the rest.
func existingAncestor(dir string) (string, error) {
	for {
		fi, err := os.Stat(dir)
		if err == nil {
			if !fi.IsDir() {
				return "", fmt.Errorf("%s is not a directory", dir)
			}
			return dir, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", err
		}
		dir = parent
	}
}

// probeDir creates and removes a file in dir: the only check that holds
// for root (which permission bits do not stop) and read-only mounts alike.
func probeDir(path, dir string) error {
	f, err := createExclusive(dir, ".closeload-probe-*")
	if err != nil {
		return fmt.Errorf("%w: %s: cannot create files in %s: %v", ErrOutputUnwritable, path, dir, errors.Unwrap(err))
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("%w: %s: probe file %s not removed: %v", ErrOutputUnwritable, path, name, err)
	}
	return nil
}

// WriteOutput is the one way closeload writes an output file (records,
// interval logs, report outputs), so that every output follows the same
// rules:
//   - "-" is standard output;
//   - a target that is not a regular file (a device such as /dev/stdout or
//     /dev/null, a pipe) or is a symlink is opened and written through,
//     never replaced: the link stays a link, the device a device;
//   - a regular file is replaced atomically (temporary file beside it,
//     fsync, rename, fsync of the directory): a reader sees the old file
//     or the whole new one. The new file keeps the old one's mode (and,
//     for root, its owner);
//   - a new file is created 0644 under the umask, missing directories
//     0755 under the umask;
//   - when the target cannot be written, the data goes to a new file
//     beside it, else in os.TempDir(), and the error is a *SavedElsewhere
//     naming that file. Only when that fails too is the data lost (the
//     error then wraps ErrOutputUnwritable).
func WriteOutput(path string, data []byte) error {
	err := writeTarget(path, data)
	if err == nil {
		return nil
	}
	saved, serr := saveElsewhere(path, data)
	if serr != nil {
		return fmt.Errorf("%w: %w; saving it elsewhere failed too: %w", ErrOutputUnwritable, err, serr)
	}
	return &SavedElsewhere{Target: path, Path: saved, Err: err}
}

// writeTarget writes data to path by the rules of WriteOutput, without
// the fallback.
func writeTarget(path string, data []byte) error {
	if path == StdoutName {
		return writeStd(os.Stdout, "standard output", data)
	}
	if path == "" {
		return fmt.Errorf("%w: empty name", ErrOutputUnwritable)
	}
	lfi, err := os.Lstat(path)
	switch {
	case err == nil && lfi.Mode()&fs.ModeSymlink != 0:
		return writeThrough(path, data)
	case err == nil && lfi.IsDir():
		return fmt.Errorf("%w: %s", ErrOutputIsDir, path)
	case err == nil && !lfi.Mode().IsRegular():
		return writeThrough(path, data)
	case err == nil:
		return replaceFile(path, data, lfi)
	case errors.Is(err, fs.ErrNotExist):
		return replaceFile(path, data, nil)
	default:
		return fmt.Errorf("write %s: %w", path, err)
	}
}

// writeStd writes data to standard output or standard error (f). A closed
// pipe there (a record on "-" piped to head) would raise SIGPIPE, which
// kills a Go program writing to descriptor 1 or 2; while SIGPIPE is being
// listened for the write fails with EPIPE instead, and the data can be
// saved elsewhere.
func writeStd(f *os.File, name string, data []byte) error {
	pipe := make(chan os.Signal, 1)
	signal.Notify(pipe, syscall.SIGPIPE)
	defer signal.Stop(pipe)
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// sameAsStd returns os.Stdout or os.Stderr when fi is the file that
// descriptor already has open (/dev/stdout, /proc/self/fd/2, a tty).
func sameAsStd(fi fs.FileInfo) (*os.File, string) {
	for _, std := range []struct {
		f    *os.File
		name string
	}{{os.Stdout, "standard output"}, {os.Stderr, "standard error"}} {
		if st, err := std.f.Stat(); err == nil && os.SameFile(fi, st) {
			return std.f, std.name
		}
	}
	return nil, ""
}

// writeThrough opens path (following a link) and writes data into it.
// O_TRUNC empties a regular file a link points to; devices and pipes
// ignore it. A path that is this process's standard output or error is
// written to that descriptor instead. A named pipe must get a reader
// within pipeReaderWait.
func writeThrough(path string, data []byte) error {
	if fi, err := os.Stat(path); err == nil {
		if fi.IsDir() {
			return fmt.Errorf("%w: %s links to a directory", ErrOutputIsDir, path)
		}
		// /dev/stdout is written through the open descriptor, as a
		// shell does: opening it anew would truncate a file the shell
		// opened for appending (>>) and lose its offset.
		if std, name := sameAsStd(fi); std != nil {
			return writeStd(std, name+" ("+path+")", data)
		}
	}
	var f *os.File
	var err error
	if fi, serr := os.Stat(path); serr == nil && fi.Mode()&fs.ModeNamedPipe != 0 {
		f, err = openPipe(path)
	} else {
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, newFileMode)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, werr := f.Write(data)
	if werr == nil {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			werr = f.Sync()
		}
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("write %s: %w", path, werr)
	}
	return nil
}

// replaceFile writes data to a temporary file beside path and renames it
// over path. old is the file being replaced (nil for a new one): its mode
// and owner carry over.
func replaceFile(path string, data []byte, old fs.FileInfo) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	f, err := createExclusive(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if old != nil {
		keepOwner(f, old)
		if err := f.Chmod(old.Mode().Perm()); err != nil {
			return fmt.Errorf("write %s: keep mode %v: %w", path, old.Mode().Perm(), err)
		}
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	ok = true
	syncDir(dir)
	return nil
}

// saveElsewhere keeps data that could not reach target: beside it when
// target names a file (or a link to one), else (and when that fails) in
// os.TempDir(). A device, pipe or "-" has no "beside" worth filling.
func saveElsewhere(target string, data []byte) (string, error) {
	base := filepath.Base(target)
	var dirs []string
	if target == StdoutName || target == "" {
		base = "closeload-output"
	} else if fi, err := os.Stat(target); err != nil || fi.Mode().IsRegular() || fi.IsDir() {
		// A file, or a link to one: beside it. A link to a device or a
		// pipe (/dev/stdout) is treated as that device.
		dirs = append(dirs, filepath.Dir(target))
	}
	dirs = append(dirs, os.TempDir())
	ext := filepath.Ext(base)
	pattern := strings.TrimSuffix(base, ext) + ".saved-*" + ext
	var errs []error
	for _, dir := range dirs {
		p, err := saveIn(dir, pattern, data)
		if err == nil {
			return p, nil
		}
		errs = append(errs, err)
	}
	return "", errors.Join(errs...)
}

// saveIn writes data durably to a new file in dir.
func saveIn(dir, pattern string, data []byte) (string, error) {
	f, err := createExclusive(dir, pattern)
	if err != nil {
		return "", err
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("save in %s: %w", dir, werr)
	}
	syncDir(dir)
	return f.Name(), nil
}

// createExclusive creates a new file in dir whose name is pattern with its
// last "*" replaced by a random string. Unlike os.CreateTemp (0600) it
// uses newFileMode under the umask, the mode an output keeps.
func createExclusive(dir, pattern string) (*os.File, error) {
	prefix, suffix := pattern, ""
	if i := strings.LastIndex(pattern, "*"); i >= 0 {
		prefix, suffix = pattern[:i], pattern[i+1:]
	}
	var b [6]byte
	var err error
	for range 100 {
		_, _ = rand.Read(b[:])
		name := filepath.Join(dir, prefix+hex.EncodeToString(b[:])+suffix)
		var f *os.File
		f, err = os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, newFileMode)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	return nil, fmt.Errorf("create in %s: %w", dir, err)
}

// CreateLog opens a file that a running process writes as it goes (a
// shard's or a matrix run's log): written in place, so it can be followed
// while it grows, created 0644 under the umask and never world-writable,
// an existing file truncated with its mode kept, a symlink or device
// written through. "-" is standard output, which the caller must not
// close. A directory is refused (ErrOutputIsDir).
func CreateLog(path string) (*os.File, error) {
	if path == StdoutName {
		return os.Stdout, nil
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("%w: %s", ErrOutputIsDir, path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, newFileMode)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	return f, nil
}

func isSymlink(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode()&fs.ModeSymlink != 0
}

// syncDir makes a rename or a new file in dir durable; best effort, since
// the data itself is already synced.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// SameOutput reports whether two output names end in the same place, so
// that a command can refuse, before it runs, two outputs that would
// overwrite each other: both "-", "-" and /dev/stdout, two names of one
// existing file (through a link, or a relative and an absolute path), or
// one new path spelled two ways. An empty name is no output.
func SameOutput(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	ia, errA := outputIdentity(a)
	ib, errB := outputIdentity(b)
	if errA == nil && errB == nil {
		return os.SameFile(ia, ib)
	}
	if a == StdoutName || b == StdoutName {
		return a == b
	}
	pa, err1 := filepath.Abs(a)
	pb, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && pa == pb
}

// outputIdentity is the file an output name writes to: standard output
// for "-", else the file the name leads to (following links).
func outputIdentity(name string) (fs.FileInfo, error) {
	if name == StdoutName {
		return os.Stdout.Stat()
	}
	return os.Stat(name)
}
