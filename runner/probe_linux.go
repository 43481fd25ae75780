package runner

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// ErrRefused reports a target that refuses every connection: closeload says
// so within a second instead of retrying forever.
var ErrRefused = errors.New("target refuses connections")

// probe makes one connection before the run so that a target that is not
// there is reported at once, as itself, rather than as a run of errors.
func probe(t netip.AddrPort, timeout time.Duration) error {
	sa := &unix.SockaddrInet4{Port: int(t.Port()), Addr: t.Addr().Unmap().As4()}
	fam := unix.AF_INET
	var to unix.Sockaddr = sa
	if !t.Addr().Unmap().Is4() {
		fam = unix.AF_INET6
		to = &unix.SockaddrInet6{Port: int(t.Port()), Addr: t.Addr().As16()}
	}
	fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(min(timeout, time.Second).Nanoseconds())
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	err = unix.Connect(fd, to)
	switch {
	case err == nil:
		// A plain close, like a load balancer's TCP check. An RST would
		// leave no TIME_WAIT, but some servers die of it: crr's server
		// reads ECONNRESET, writes anyway and is killed by SIGPIPE.
		return nil
	case errors.Is(err, unix.ECONNREFUSED):
		return fmt.Errorf("%w: %s refused the connection (ECONNREFUSED); is a server listening there?", ErrRefused, t)
	case errors.Is(err, unix.EINPROGRESS), errors.Is(err, unix.EAGAIN), errors.Is(err, unix.ETIMEDOUT):
		return fmt.Errorf("%w: %s did not answer within %v", ErrRefused, t, min(timeout, time.Second))
	}
	return fmt.Errorf("%w: %s: %v", ErrRefused, t, err)
}
