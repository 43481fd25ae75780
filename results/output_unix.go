//go:build unix

package results

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// pipeReaderWait bounds how long a write to a named pipe waits for a
// reader to open it: a pipe nobody reads would otherwise hold the process
// after its run, with the record in nobody's hands (and, in host mode,
// the host's values not yet restored). Tests shorten it.
var pipeReaderWait = 30 * time.Second

// openPipe opens a named pipe for writing once a reader has it open, and
// gives up (the record then goes elsewhere) after pipeReaderWait.
func openPipe(path string) (*os.File, error) {
	deadline := time.Now().Add(pipeReaderWait)
	for {
		// Non-blocking, the open fails with ENXIO while no reader is
		// there; the file's writes still wait for room in the pipe.
		f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err == nil || !errors.Is(err, syscall.ENXIO) {
			return f, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no reader opened the named pipe within %v: %w", pipeReaderWait, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// writable reports whether this process may open path for writing; the
// kernel answers for the real uid, read-only mounts included.
func writable(path string) bool { return unix.Access(path, unix.W_OK) == nil }

// keepOwner gives f the owner of the file it replaces. Only root may, and
// only root replaces other users' files; for everyone else it is a no-op
// (best effort: a failure leaves the file to its creator).
func keepOwner(f *os.File, old fs.FileInfo) {
	st, ok := old.Sys().(*syscall.Stat_t)
	if !ok || os.Geteuid() != 0 {
		return
	}
	_ = f.Chown(int(st.Uid), int(st.Gid))
}
