package runner

import (
	"errors"

	"golang.org/x/sys/unix"
)

// errPseudoFS marks a directory on a kernel pseudo filesystem, where no
// regular file can be created.
var errPseudoFS = errors.New("is on a kernel pseudo filesystem (proc, sysfs) where no file can be created")

// accessWrite asks the kernel whether this process may create files in dir.
func accessWrite(dir string) error {
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) == nil {
		switch st.Type {
		case unix.PROC_SUPER_MAGIC, unix.SYSFS_MAGIC, unix.CGROUP2_SUPER_MAGIC, unix.DEBUGFS_MAGIC:
			return errPseudoFS
		}
	}
	return unix.Access(dir, unix.W_OK)
}
