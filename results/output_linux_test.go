package results

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// outputHelperEnv makes the test binary write one record to the path it
// names and exit, so that tests can give it a standard output of their
// choosing (a pipe, a file) as a real process would have.
const outputHelperEnv = "CLOSELOAD_RESULTS_OUTPUT_HELPER"

func TestMain(m *testing.M) {
	if path := os.Getenv(outputHelperEnv); path != "" {
		r := &Run{ID: "helper-record"}
		if err := Write(path, r); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runHelper runs the test binary writing a record to path with stdout.
func runHelper(t *testing.T, path string, stdout io.Writer) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), outputHelperEnv+"="+path)
	cmd.Stdout = stdout
	var errb strings.Builder
	cmd.Stderr = &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("helper writing %s: %v\n%s", path, err, errb.String())
	}
}

func checkHelperRecord(t *testing.T, data []byte) {
	t.Helper()
	r, err := Read(bytes.NewReader(data))
	if err != nil || r.ID != "helper-record" {
		t.Fatalf("standard output does not hold the record: %v\n%q", err, data)
	}
}

// TestWriteOutputStdout writes "-" and a link to /proc/self/fd/1 (what
// /dev/stdout is; the test makes its own link so that a regression could
// never replace the host's /dev/stdout) from a child whose standard output
// is a pipe, then a regular file: the record arrives, the file is the
// same inode, the link is still a link.
func TestWriteOutputStdout(t *testing.T) {
	dir := t.TempDir()
	devStdout := filepath.Join(dir, "stdout")
	if err := os.Symlink("/proc/self/fd/1", devStdout); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"-", devStdout} {
		t.Run(filepath.Base(path)+"/pipe", func(t *testing.T) {
			var out bytes.Buffer
			runHelper(t, path, &out)
			checkHelperRecord(t, out.Bytes())
		})
		t.Run(filepath.Base(path)+"/file", func(t *testing.T) {
			name := filepath.Join(dir, "captured")
			f, err := os.Create(name)
			if err != nil {
				t.Fatal(err)
			}
			before, _ := f.Stat()
			runHelper(t, path, f)
			f.Close()
			after, err := os.Stat(name)
			if err != nil || !os.SameFile(before, after) {
				t.Fatalf("the file behind standard output was replaced: %v", err)
			}
			checkHelperRecord(t, []byte(readString(t, name)))
		})
	}
	if fi, err := os.Lstat(devStdout); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("link to /proc/self/fd/1 replaced: %v", err)
	}
	if names := dirNames(t, dir); strings.Join(names, " ") != "captured stdout" {
		t.Errorf("left behind: %v", names)
	}
}

// TestWriteOutputStdoutAppend writes "-" and a link to /proc/self/fd/1
// from a child whose standard output a shell opened with >> onto a file
// with content: the record is appended after that content, not written
// over it from offset 0 (opening /proc/self/fd/1 anew with O_TRUNC would).
func TestWriteOutputStdoutAppend(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "stdout")
	if err := os.Symlink("/proc/self/fd/1", link); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"-", link} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			name := filepath.Join(t.TempDir(), "log")
			mustWriteFile(t, name, "earlier output\n", 0o644)
			f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			runHelper(t, path, f)
			f.Close()
			got := readString(t, name)
			rest, ok := strings.CutPrefix(got, "earlier output\n")
			if !ok {
				t.Fatalf("earlier content lost: %q", got)
			}
			checkHelperRecord(t, []byte(rest))
		})
	}
}

// mknod makes a device node like /dev/null (1,3) or /dev/full (1,7) in a
// temporary directory, so that a regression replaces the test's node, not
// the host's. It needs root (CAP_MKNOD).
func mknod(t *testing.T, name string, minor uint32) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := unix.Mknod(path, unix.S_IFCHR|0o666, int(unix.Mkdev(1, minor))); err != nil {
		t.Skipf("cannot make a device node (needs root and a filesystem without nodev): %v", err)
	}
	return path
}

// TestWriteOutputDevice writes to a null device: it stays a character
// device and nothing is created beside it.
func TestWriteOutputDevice(t *testing.T) {
	null := mknod(t, "null", 3)
	if err := CheckOutput(null); err != nil {
		t.Fatalf("CheckOutput(null device): %v", err)
	}
	if err := Write(null, sampleRun(t)); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(null)
	if err != nil || fi.Mode()&fs.ModeCharDevice == 0 {
		t.Fatalf("null device replaced: mode %v, %v", fi.Mode(), err)
	}
	if names := dirNames(t, filepath.Dir(null)); len(names) != 1 {
		t.Errorf("left behind: %v", names)
	}
}

// TestWriteOutputFullDevice writes a record to a device that fails every
// write (ENOSPC, like a full disk): the record is saved in os.TempDir(),
// not in the device's directory, and the error says where and why.
func TestWriteOutputFullDevice(t *testing.T) {
	full := mknod(t, "full", 7)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	err := Write(full, sampleRun(t))
	var se *SavedElsewhere
	if !errors.As(err, &se) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("err = %v, want *SavedElsewhere wrapping ENOSPC", err)
	}
	if filepath.Dir(se.Path) != tmp || !strings.HasPrefix(filepath.Base(se.Path), "full.saved-") {
		t.Errorf("saved at %s, want full.saved-* in %s", se.Path, tmp)
	}
	if _, err := ReadFile(se.Path); err != nil {
		t.Errorf("saved record: %v", err)
	}
	if names := dirNames(t, filepath.Dir(full)); len(names) != 1 {
		t.Errorf("saved beside a device: %v", names)
	}
}

// TestWriteOutputFIFO writes to a named pipe a reader is on: the reader
// gets the record, the pipe stays a pipe.
func TestWriteOutputFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CheckOutput(fifo); err != nil {
		t.Fatalf("CheckOutput(fifo): %v", err)
	}
	got := make(chan []byte, 1)
	go func() {
		f, err := os.Open(fifo) // blocks until the writer opens
		if err != nil {
			got <- nil
			return
		}
		b, _ := io.ReadAll(f)
		f.Close()
		got <- b
	}()
	if err := Write(fifo, sampleRun(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if r, err := Read(bytes.NewReader(b)); err != nil || r.ID != sampleRun(t).ID {
			t.Fatalf("reader got %d bytes: %v", len(b), err)
		}
	case <-time.After(20 * time.Second):
		// Release the reader, still blocked in open, before failing.
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
		<-got
		t.Fatal("reader of the pipe got nothing")
	}
	if fi, _ := os.Lstat(fifo); fi.Mode()&fs.ModeNamedPipe == 0 {
		t.Fatalf("pipe replaced: %v", fi.Mode())
	}
}

// TestWriteOutputFIFONoReader writes to a named pipe nobody opens: the
// write gives up after the bounded wait instead of holding the process,
// and the record goes to TMPDIR.
func TestWriteOutputFIFONoReader(t *testing.T) {
	old := pipeReaderWait
	pipeReaderWait = 200 * time.Millisecond
	defer func() { pipeReaderWait = old }()
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	err := Write(fifo, sampleRun(t))
	var se *SavedElsewhere
	if !errors.As(err, &se) || filepath.Dir(se.Path) != tmp || !strings.Contains(err.Error(), "no reader") {
		t.Fatalf("err = %v, want *SavedElsewhere in %s saying no reader came", err, tmp)
	}
	if _, err := ReadFile(se.Path); err != nil {
		t.Errorf("saved record: %v", err)
	}
	if fi, _ := os.Lstat(fifo); fi.Mode()&fs.ModeNamedPipe == 0 {
		t.Fatalf("pipe replaced: %v", fi.Mode())
	}
}

// TestWriteOutputUmask000 creates records, an interval log and a shard log
// under umask 000: all 0644, none world-writable.
func TestWriteOutputUmask000(t *testing.T) {
	old := unix.Umask(0)
	defer unix.Umask(old)
	dir := t.TempDir()
	if err := Write(filepath.Join(dir, "new", "r.json"), sampleRun(t)); err != nil {
		t.Fatal(err)
	}
	if err := WriteOutput(filepath.Join(dir, "r.hlog"), []byte("#hlog\n")); err != nil {
		t.Fatal(err)
	}
	f, err := CreateLog(filepath.Join(dir, "shard-0.log"))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	// Saved-elsewhere files follow the same rule.
	os.Mkdir(filepath.Join(dir, "taken.json"), 0o755)
	var se *SavedElsewhere
	if err := WriteOutput(filepath.Join(dir, "taken.json"), []byte("x")); !errors.As(err, &se) {
		t.Fatalf("err = %v, want *SavedElsewhere", err)
	}
	for _, p := range []string{"new/r.json", "r.hlog", "shard-0.log", filepath.Base(se.Path)} {
		fi, err := os.Stat(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v under umask 000, want 0644", p, fi.Mode().Perm())
		}
	}
}

// TestWriteOutputKeepsOwner replaces, as root, a record owned by another
// user: the new file keeps that owner as well as the mode.
func TestWriteOutputKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root replaces another user's file")
	}
	path := filepath.Join(t.TempDir(), "r.json")
	mustWriteFile(t, path, "old", 0o600)
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := WriteOutput(path, []byte("new")); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 65534 || st.Gid != 65534 || fi.Mode().Perm() != 0o600 {
		t.Errorf("owner %d:%d mode %v, want 65534:65534 0600", st.Uid, st.Gid, fi.Mode().Perm())
	}
}

// fsImmutable is FS_IMMUTABLE_FL of linux/fs.h ("chattr +i"): nothing,
// root included, may create, remove or change files in such a directory.
const fsImmutable = 0x10

// immutableDir makes dir immutable until the test ends; it skips where the
// filesystem or the user cannot (tmpfs, not root).
func immutableDir(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err == nil {
		err = unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags|fsImmutable))
	}
	if err != nil {
		t.Skipf("cannot make %s immutable (root on ext4/xfs/btrfs needed): %v", dir, err)
	}
	t.Cleanup(func() {
		f, err := os.Open(dir)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags&^fsImmutable)); err != nil {
			t.Errorf("clear immutable flag of %s: %v", dir, err)
		}
	})
}

// TestWriteOutputReadOnlyDir uses a directory that refuses new files even
// to root: CheckOutput refuses it up front, and a write that meets it
// after the run saves the record in os.TempDir(), leaving the old file.
func TestWriteOutputReadOnlyDir(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "r.json")
	mustWriteFile(t, path, "old", 0o644)
	immutableDir(t, dir)
	if err := CheckOutput(path); !errors.Is(err, ErrOutputUnwritable) || !strings.Contains(err.Error(), dir) {
		t.Errorf("CheckOutput in a read-only directory = %v, want ErrOutputUnwritable naming it", err)
	}
	if err := CheckOutput(filepath.Join(dir, "new.json")); !errors.Is(err, ErrOutputUnwritable) {
		t.Errorf("CheckOutput of a new file in a read-only directory = %v", err)
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	err := Write(path, sampleRun(t))
	var se *SavedElsewhere
	if !errors.As(err, &se) || filepath.Dir(se.Path) != tmp {
		t.Fatalf("err = %v, want *SavedElsewhere in %s", err, tmp)
	}
	if _, err := ReadFile(se.Path); err != nil {
		t.Errorf("saved record: %v", err)
	}
	if got := readString(t, path); got != "old" {
		t.Errorf("old record changed to %q", got)
	}
}

// TestWriteOutputStdoutClosedPipe writes "-", and a link to
// /proc/self/fd/1 (as /dev/stdout is), from a child whose standard output
// is a pipe nobody reads any more (closeload ... --out - | head): the
// child is not killed by SIGPIPE, says where the record went, and the
// record is in its TMPDIR, not beside the link.
func TestWriteOutputStdoutClosedPipe(t *testing.T) {
	linkDir := t.TempDir()
	link := filepath.Join(linkDir, "stdout")
	if err := os.Symlink("/proc/self/fd/1", link); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"-", link} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			tmp := t.TempDir()
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			r.Close()
			self, _ := os.Executable()
			cmd := exec.Command(self)
			cmd.Env = append(os.Environ(), outputHelperEnv+"="+path, "TMPDIR="+tmp)
			cmd.Stdout = w
			var errb strings.Builder
			cmd.Stderr = &errb
			err = cmd.Run()
			w.Close()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("child writing to a closed pipe: %v, want exit 1 (not killed by SIGPIPE)\n%s", err, errb.String())
			}
			names := dirNames(t, tmp)
			if len(names) != 1 || !strings.Contains(names[0], ".saved-") {
				t.Fatalf("TMPDIR holds %v, want one *.saved-* file", names)
			}
			saved := filepath.Join(tmp, names[0])
			if !strings.Contains(errb.String(), saved) || !strings.Contains(errb.String(), "broken pipe") {
				t.Errorf("child said %q, want the saved path and the reason", errb.String())
			}
			checkHelperRecord(t, []byte(readString(t, saved)))
			if names := dirNames(t, linkDir); len(names) != 1 {
				t.Errorf("saved beside the link to a pipe: %v", names)
			}
		})
	}
}

// TestSameOutputDevStdout checks that "-" and a link to /proc/self/fd/1
// (what /dev/stdout is) are one output.
func TestSameOutputDevStdout(t *testing.T) {
	link := filepath.Join(t.TempDir(), "stdout")
	if err := os.Symlink("/proc/self/fd/1", link); err != nil {
		t.Fatal(err)
	}
	if !SameOutput("-", link) || !SameOutput(link, "-") {
		t.Errorf("SameOutput(-, %s) = false", link)
	}
}

// TestWriteOutputFIFOLarge writes more than a pipe holds (1 MiB) to a
// named pipe: the non-blocking open must not turn a full pipe into a
// short write; the reader gets every byte.
func TestWriteOutputFIFOLarge(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	got := make(chan []byte, 1)
	go func() {
		f, err := os.Open(fifo)
		if err != nil {
			got <- nil
			return
		}
		b, _ := io.ReadAll(f)
		f.Close()
		got <- b
	}()
	if err := WriteOutput(fifo, data); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatalf("reader got %d bytes, want %d", len(b), len(data))
	}
}
