//go:build unix

package results

import (
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

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
