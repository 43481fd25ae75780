package workload

import (
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The cycle is made of raw, blocking system calls on plain descriptors: no
// net.Conn, no poller registration, no allocation. Calls that cannot block
// (socket, setsockopt, bind, shutdown, close, a send that fits the buffer) go
// through RawSyscall and skip the runtime's scheduler hand-off; calls that can
// block (connect, read, a send that must wait) go through Syscall. This is
// what brings the engine within reach of a minimal C client (vs-limit).

// sockaddr is a socket address in the kernel's layout, built once per worker.
type sockaddr struct {
	raw    [unix.SizeofSockaddrInet6]byte
	len    uintptr
	family int
}

func makeSockaddr(ap netip.AddrPort) sockaddr {
	var s sockaddr
	a := ap.Addr().Unmap()
	port := ap.Port()
	if a.Is4() {
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&s.raw[0]))
		sa.Family = unix.AF_INET
		sa.Port = port<<8 | port>>8
		sa.Addr = a.As4()
		s.len, s.family = unix.SizeofSockaddrInet4, unix.AF_INET
		return s
	}
	sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&s.raw[0]))
	sa.Family = unix.AF_INET6
	sa.Port = port<<8 | port>>8
	sa.Addr = a.As16()
	s.len, s.family = unix.SizeofSockaddrInet6, unix.AF_INET6
	return s
}

func errnoErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func rawSocket(family int) (int, error) {
	fd, _, e := unix.RawSyscall(unix.SYS_SOCKET, uintptr(family), unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	return int(fd), errnoErr(e)
}

func rawSetsockoptInt(fd, level, opt, value int) error {
	v := int32(value)
	_, _, e := unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(unsafe.Pointer(&v)), 4, 0)
	return errnoErr(e)
}

// rawSetTimeouts bounds every blocking call on fd: SO_SNDTIMEO also bounds
// connect(), SO_RCVTIMEO every read; expiry shows as EAGAIN/EINPROGRESS.
func rawSetTimeouts(fd int, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	tv := unix.NsecToTimeval(d.Nanoseconds())
	for _, opt := range []int{unix.SO_SNDTIMEO, unix.SO_RCVTIMEO} {
		_, _, e := unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, uintptr(opt), uintptr(unsafe.Pointer(&tv)), unsafe.Sizeof(tv), 0)
		if e != 0 {
			return e
		}
	}
	return nil
}

// rawBindNoPort binds fd to the source address and leaves the port to
// connect(), which then searches ports per 4-tuple instead of per address:
// the difference between 40k and 530 connections/s.
func rawBindNoPort(fd int, src *sockaddr) error {
	if err := rawSetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1); err != nil {
		return err
	}
	_, _, e := unix.RawSyscall(unix.SYS_BIND, uintptr(fd), uintptr(unsafe.Pointer(&src.raw[0])), src.len)
	return errnoErr(e)
}

func sysConnect(fd int, dst *sockaddr, timeout time.Duration) error {
	_, _, e := unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&dst.raw[0])), dst.len)
	if e != unix.EINTR {
		return errnoErr(e)
	}
	// A signal interrupted a connect with a timeout set (signal(7): never
	// restarted); the handshake goes on, so wait for it and read its result.
	ms := int(timeout.Milliseconds())
	if timeout <= 0 {
		ms = -1
	}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	for {
		n, err := unix.Poll(pfd, ms)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return unix.ETIMEDOUT
		}
		break
	}
	soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return err
	}
	return errnoErr(syscall.Errno(soerr))
}

// sysRead reads into p, restarting after signals. n == 0 with a nil error is
// EOF.
func sysRead(fd int, p []byte) (int, error) {
	for {
		n, _, e := unix.Syscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(n), nil
	}
}

// sendAll writes all of p. It first tries without blocking (the common case
// of a small message into an empty buffer, no scheduler hand-off) and waits
// in a blocking send only when the buffer is full. MSG_NOSIGNAL turns a
// write to a reset connection into EPIPE instead of a signal.
func sendAll(fd int, p []byte) (int, error) {
	sent := 0
	for sent < len(p) {
		q := p[sent:]
		n, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&q[0])), uintptr(len(q)), unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EAGAIN {
			n, _, e = unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&q[0])), uintptr(len(q)), unix.MSG_NOSIGNAL, 0, 0)
		}
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return sent, e
		}
		sent += int(n)
	}
	return sent, nil
}

// sendSome writes what fits without blocking (stream-echo's writer half).
func sendSome(fd int, p []byte) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT, 0, 0)
	if e == unix.EAGAIN {
		return 0, nil
	}
	return int(n), errnoErr(e)
}

// recvSome reads what is there without blocking; ok is false when nothing
// was there.
func recvSome(fd int, p []byte) (n int, ok bool, err error) {
	r, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), unix.MSG_DONTWAIT, 0, 0)
	if e == unix.EAGAIN {
		return 0, false, nil
	}
	if e != 0 {
		return 0, true, e
	}
	return int(r), true, nil
}

func rawShutdown(fd, how int) error {
	_, _, e := unix.RawSyscall(unix.SYS_SHUTDOWN, uintptr(fd), uintptr(how), 0)
	return errnoErr(e)
}

func rawClose(fd int) {
	unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
}

// rawLinger0 makes close() abortive: RST, no FIN, no TIME_WAIT.
func rawLinger0(fd int) error {
	l := unix.Linger{Onoff: 1, Linger: 0}
	_, _, e := unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_LINGER, uintptr(unsafe.Pointer(&l)), unsafe.Sizeof(l), 0)
	return errnoErr(e)
}

// pollFd waits until fd is ready for events, up to timeout.
func pollFd(fd int, events int16, timeout time.Duration) (int16, error) {
	ms := int(timeout.Milliseconds())
	if timeout <= 0 {
		ms = -1
	}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: events}}
	for {
		n, err := unix.Poll(pfd, ms)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 {
			return 0, unix.ETIMEDOUT
		}
		return pfd[0].Revents, nil
	}
}

// acceptLoop accepts connections on lfd and hands each to serve until
// stopping is set (a shutdown of lfd wakes a blocked accept) or the listener
// is gone. Transient failures are retried; onErr sees the others, and
// descriptor exhaustion waits a little instead of spinning.
func acceptLoop(lfd int, stopping *atomic.Bool, serve func(fd int), onErr func(unix.Errno)) {
	for k := uint64(0); ; k++ {
		yieldEvery(k)
		fd, _, e := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(lfd), 0, 0, unix.SOCK_CLOEXEC, 0, 0)
		if stopping.Load() {
			if e == 0 {
				rawClose(int(fd))
			}
			return
		}
		switch e {
		case 0:
			serve(int(fd))
		case unix.EINTR, unix.ECONNABORTED, unix.EAGAIN:
		case unix.EINVAL, unix.EBADF:
			return
		default:
			onErr(e)
			if e == unix.EMFILE || e == unix.ENFILE {
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
}
