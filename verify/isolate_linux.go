package verify

import (
	"context"
	"fmt"
	"os/exec"
	"time"

	"github.com/closeload/closeload/sysctl"
	"golang.org/x/sys/unix"
)

// IsolatedCommand returns a command that re-executes the current binary
// with args in a fresh network namespace (and user namespace when not root,
// see sysctl.IsolatedCommand). The child dies with its parent, and the
// namespace with the child: nothing is left behind. Its output is the
// caller's to collect; it does not read standard input.
func IsolatedCommand(ctx context.Context, args ...string) *exec.Cmd {
	cmd := sysctl.IsolatedCommand(ctx, args)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, nil, nil
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// CheckIsolated returns nil only in a child started by IsolatedCommand whose
// network namespace differs from its parent's (sysctl.InIsolatedChild checks
// the kernel, not just the environment), and says which kind of isolation it
// is ("isolated" or "isolated-userns").
func CheckIsolated() (string, error) {
	ok, mode := sysctl.InIsolatedChild()
	if !ok {
		return "", fmt.Errorf("%w: not a child started by closeload verify in a network namespace of its own", ErrNotIsolated)
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
