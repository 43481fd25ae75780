package collector

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNetlink marks a failure of the sock_diag source: the socket could not be
// opened (refused in some sandboxes) or the kernel answered with an error.
var ErrNetlink = errors.New("sock_diag")

// ErrDumpInterrupted is returned when every retry of a dump came back marked
// NLM_F_DUMP_INTR (the socket tables changed under the dump).
var ErrDumpInterrupted = errors.New("sock_diag dump interrupted (NLM_F_DUMP_INTR) on every retry")

// dumpRetries bounds the retries of an interrupted dump.
const dumpRetries = 4

// nlRecvBuf is the receive buffer: the kernel fills one dump skb of up to
// 32 KiB per read, about 370 sockets.
const nlRecvBuf = 64 << 10

// nlConn is a netlink socket; tests substitute a scripted one.
type nlConn interface {
	send(b []byte) error
	recv(b []byte) (int, error)
	close() error
}

// nlSocket is a NETLINK_SOCK_DIAG socket.
type nlSocket struct {
	fd int
	sa unix.SockaddrNetlink
}

// openNetlink opens a sock_diag socket, in the network namespace at
// netnsPath when it is not empty (a netlink socket answers for the namespace
// it was created in).
func openNetlink(netnsPath string) (*nlSocket, error) {
	var fd int
	var err error
	if netnsPath == "" {
		fd, err = nlSocketFD()
	} else {
		fd, err = inNetns(netnsPath, nlSocketFD)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: open NETLINK_SOCK_DIAG socket: %v", ErrNetlink, err)
	}
	return &nlSocket{fd: fd, sa: unix.SockaddrNetlink{Family: unix.AF_NETLINK}}, nil
}

func nlSocketFD() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return -1, err
	}
	// A bounded wait: a read never blocks a sample for ever.
	tv := unix.NsecToTimeval(int64(5 * time.Second))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// inNetns runs fn on a thread that has joined the network namespace at path,
// then returns the thread to its own namespace. Only when that return fails
// is the thread left locked, so that the runtime discards it: ending threads
// needlessly would also fire the Pdeathsig of children they started.
func inNetns(path string, fn func() (int, error)) (int, error) {
	type res struct {
		fd  int
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		own, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- res{-1, err}
			return
		}
		defer own.Close()
		target, err := os.Open(path)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- res{-1, err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- res{-1, fmt.Errorf("setns %s: %w", path, err)}
			return
		}
		fd, err := fn()
		if unix.Setns(int(own.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		ch <- res{fd, err}
	}()
	r := <-ch
	return r.fd, r.err
}

func (s *nlSocket) send(b []byte) error { return unix.Sendto(s.fd, b, 0, &s.sa) }

func (s *nlSocket) recv(b []byte) (int, error) {
	for range 100 {
		n, err := unix.Read(s.fd, b)
		if err == unix.EINTR {
			continue
		}
		return n, err
	}
	return 0, unix.EINTR
}

func (s *nlSocket) close() error { return unix.Close(s.fd) }

// netlinkSource counts states with SOCK_DIAG_BY_FAMILY dumps.
type netlinkSource struct {
	open     func() (nlConn, error)
	conn     nlConn
	families []int
	// ports filters in user space when the kernel filter is not used.
	ports *portSet
	req   []byte
	// compat is the one-walk request for both families (TCPDIAG_GETSOCK);
	// nil when one family is asked for or the kernel refused it.
	compat []byte
	seq    uint32
	buf    []byte
	// Retries counts dumps retried after NLM_F_DUMP_INTR.
	retries uint64
}

// newNetlinkSource opens the socket and prepares the request with the
// kernel port filter.
func newNetlinkSource(netnsPath string, families []int, ports *portSet) (*netlinkSource, error) {
	open := func() (nlConn, error) {
		s, err := openNetlink(netnsPath)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return newNetlinkSourceConn(open, families, ports)
}

func newNetlinkSourceConn(open func() (nlConn, error), families []int, ports *portSet) (*netlinkSource, error) {
	conn, err := open()
	if err != nil {
		return nil, err
	}
	n := &netlinkSource{open: open, conn: conn, families: families, buf: make([]byte, nlRecvBuf)}
	var bc []byte
	if ports != nil {
		if len(ports.ports) <= maxBytecodePorts {
			bc = portBytecode(ports.ports)
		} else {
			n.ports = ports
		}
	}
	n.req = buildDiagRequest(bc)
	if len(families) == 2 {
		n.compat = buildCompatRequest(bc)
	}
	return n, nil
}

// buildCompatRequest returns a TCPDIAG_GETSOCK dump request for every state
// of both families, with bytecode when not nil.
func buildCompatRequest(bc []byte) []byte {
	size := unix.NLMSG_HDRLEN + sizeofInetDiagReq
	if bc != nil {
		size += unix.SizeofNlAttr + len(bc)
	}
	b := make([]byte, size)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(size))
	ne.PutUint16(b[4:], tcpDiagGetSock)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	r := b[unix.NLMSG_HDRLEN:]
	ne.PutUint32(r[4+sizeofInetDiagSockID:], allStatesMask)
	if bc != nil {
		a := r[sizeofInetDiagReq:]
		ne.PutUint16(a[0:], uint16(unix.SizeofNlAttr+len(bc)))
		ne.PutUint16(a[2:], inetDiagReqBytecode)
		copy(a[unix.SizeofNlAttr:], bc)
	}
	return b
}

// buildDiagRequest returns a SOCK_DIAG_BY_FAMILY dump request for every
// state, with bytecode as INET_DIAG_REQ_BYTECODE when not nil. Family and
// sequence number are patched in per dump.
func buildDiagRequest(bc []byte) []byte {
	size := unix.NLMSG_HDRLEN + sizeofInetDiagReqV2
	if bc != nil {
		size += unix.SizeofNlAttr + len(bc)
	}
	b := make([]byte, size)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(size))
	ne.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	r := b[unix.NLMSG_HDRLEN:]
	r[1] = unix.IPPROTO_TCP
	ne.PutUint32(r[4:], allStatesMask)
	if bc != nil {
		a := r[sizeofInetDiagReqV2:]
		ne.PutUint16(a[0:], uint16(unix.SizeofNlAttr+len(bc)))
		ne.PutUint16(a[2:], inetDiagReqBytecode)
		copy(a[unix.SizeofNlAttr:], bc)
	}
	return b
}

func (n *netlinkSource) name() string { return SourceNetlink }

// count dumps every family into s, retrying the whole count (after s.reset)
// when a dump comes back interrupted.
func (n *netlinkSource) count(s resetSink, _ *Counts) error {
	for attempt := 0; ; attempt++ {
		intr, err := n.countOnce(s)
		if err != nil {
			return err
		}
		if !intr {
			return nil
		}
		n.retries++
		if attempt+1 >= dumpRetries {
			return ErrDumpInterrupted
		}
		s.reset()
	}
}

func (n *netlinkSource) countOnce(s resetSink) (intr bool, err error) {
	if n.conn == nil {
		if n.conn, err = n.open(); err != nil {
			return false, err
		}
	}
	if n.compat != nil {
		i, err := n.dump(n.compat, 0, s)
		if err == nil {
			return i, nil
		}
		var errno syscall.Errno
		if !errors.As(err, &errno) {
			n.conn.close()
			n.conn = nil
			return false, err
		}
		// The kernel refused the one-walk request: one dump per family
		// from now on.
		n.compat = nil
		s.reset()
	}
	for _, fam := range n.families {
		i, err := n.dump(n.req, uint8(fam), s)
		if err != nil {
			// The socket may hold the rest of a reply: start afresh next time.
			n.conn.close()
			n.conn = nil
			return false, err
		}
		intr = intr || i
	}
	return intr, nil
}

// dump sends one request (for family when it is a SOCK_DIAG_BY_FAMILY one)
// and reads its reply to NLMSG_DONE.
func (n *netlinkSource) dump(req []byte, family uint8, s sink) (intr bool, err error) {
	n.seq++
	binary.NativeEndian.PutUint32(req[8:], n.seq)
	if family != 0 {
		req[unix.NLMSG_HDRLEN] = family
	}
	if err := n.conn.send(req); err != nil {
		return false, fmt.Errorf("%w: send: %v", ErrNetlink, err)
	}
	// Bounded: a dump of a million sockets takes about 3,000 reads.
	for range 1 << 22 {
		m, err := n.conn.recv(n.buf)
		if err != nil {
			return false, fmt.Errorf("%w: receive: %v", ErrNetlink, err)
		}
		done, i, err := parseDiagReply(n.buf[:m], n.seq, n.ports, s)
		intr = intr || i
		if err != nil || done {
			return intr, err
		}
	}
	return intr, fmt.Errorf("%w: dump did not end", ErrNetlink)
}

func (n *netlinkSource) close() error {
	if n.conn == nil {
		return nil
	}
	err := n.conn.close()
	n.conn = nil
	return err
}

// parseDiagReply reads one buffer of netlink messages answering request seq:
// each SOCK_DIAG_BY_FAMILY (or TCPDIAG_GETSOCK) message is one socket, NLMSG_DONE ends the dump,
// NLMSG_ERROR carries an errno. Messages of other sequence numbers (left
// from an abandoned dump) are skipped. intr reports NLM_F_DUMP_INTR.
func parseDiagReply(b []byte, seq uint32, ports *portSet, s sink) (done, intr bool, err error) {
	ne := binary.NativeEndian
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(ne.Uint32(b[0:]))
		typ := ne.Uint16(b[4:])
		flags := ne.Uint16(b[6:])
		mseq := ne.Uint32(b[8:])
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return done, intr, fmt.Errorf("%w: netlink message length %d of %d bytes left", ErrParse, l, len(b))
		}
		body := b[unix.NLMSG_HDRLEN:l]
		if next := (l + 3) &^ 3; next < len(b) {
			b = b[next:]
		} else {
			b = b[len(b):]
		}
		if mseq != seq {
			continue
		}
		if flags&unix.NLM_F_DUMP_INTR != 0 {
			intr = true
		}
		switch typ {
		case unix.NLMSG_DONE:
			if len(body) >= 4 {
				if e := int32(ne.Uint32(body)); e < 0 {
					return true, intr, fmt.Errorf("%w: dump ended with %v", ErrNetlink, syscall.Errno(-e))
				}
			}
			return true, intr, nil
		case unix.NLMSG_ERROR:
			if len(body) < 4 {
				return true, intr, fmt.Errorf("%w: short NLMSG_ERROR", ErrParse)
			}
			if e := int32(ne.Uint32(body)); e != 0 {
				return true, intr, fmt.Errorf("%w: kernel refused the request: %w", ErrNetlink, syscall.Errno(-e))
			}
		case unix.SOCK_DIAG_BY_FAMILY, tcpDiagGetSock:
			if len(body) < sizeofInetDiagMsg {
				return done, intr, fmt.Errorf("%w: inet_diag_msg of %d bytes", ErrParse, len(body))
			}
			lport := binary.BigEndian.Uint16(body[offMsgSport:])
			rport := binary.BigEndian.Uint16(body[offMsgDport:])
			if ports.match(lport, rport) {
				s.add(body[offMsgState], ne.Uint32(body[offMsgInode:]) != 0, lport, rport)
			}
		}
	}
	return false, intr, nil
}
