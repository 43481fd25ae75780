package verify

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/closeload/closeload/sysctl"
	"golang.org/x/sys/unix"
)

// parentNetnsEnv carries the parent's network namespace inode to the child:
// on top of sysctl's isolation mark, the child refuses to change sysctls
// unless its own namespace really differs from its parent's.
const parentNetnsEnv = "CLOSELOAD_VERIFY_PARENT_NETNS"

// netnsInode identifies the network namespace this process is in.
func netnsInode() (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// IsolatedCommand returns a command that re-executes the current binary
// with args in a fresh network namespace (and user namespace when not root,
// see sysctl.IsolatedCommand). The child dies with its parent, and the
// namespace with the child: nothing is left behind. Its output is the
// caller's to collect; it does not read standard input.
func IsolatedCommand(ctx context.Context, args ...string) *exec.Cmd {
	cmd := sysctl.IsolatedCommand(ctx, args)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, nil, nil
	cmd.WaitDelay = 5 * time.Second
	if ino, err := netnsInode(); err == nil {
		cmd.Env = append(cmd.Env, parentNetnsEnv+"="+strconv.FormatUint(ino, 10))
	}
	return cmd
}

// CheckIsolated returns nil only in a child started by IsolatedCommand whose
// network namespace differs from its parent's, and says which kind of
// isolation it is ("isolated" or "isolated-userns").
func CheckIsolated() (string, error) {
	ok, mode := sysctl.InIsolatedChild()
	if !ok {
		return "", fmt.Errorf("%w: not started by closeload verify", ErrNotIsolated)
	}
	parent, err := strconv.ParseUint(os.Getenv(parentNetnsEnv), 10, 64)
	if err != nil {
		return "", fmt.Errorf("%w: the parent's namespace is unknown (no %s)", ErrNotIsolated, parentNetnsEnv)
	}
	own, err := netnsInode()
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNotIsolated, err)
	}
	if own == parent {
		return "", fmt.Errorf("%w: the child shares its parent's network namespace", ErrNotIsolated)
	}
	return mode, nil
}

// addLoopbackAlias gives lo an extra IPv4 address (label "lo:N") so that an
// experiment can make connections that the kernel does not treat as loopback
// (tcp_tw_reuse=2 tests ipv4_is_loopback on the addresses).
func addLoopbackAlias(label string, ip [4]byte) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(label)
	if err != nil {
		return err
	}
	if err := ifr.SetInet4Addr(ip[:]); err != nil {
		return err
	}
	return unix.IoctlIfreq(fd, unix.SIOCSIFADDR, ifr)
}
