package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Small socket helpers shared by the experiments. Everything talks to
// 127.0.0.1 inside the experiment's own namespace; every wait is bounded.

var loopback = netip.MustParseAddr("127.0.0.1")

// listen opens a listener on 127.0.0.1:port (0 picks one).
func listen(port int) (*net.TCPListener, error) {
	return net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
}

// portOf returns a listener's or connection's local port.
func portOf(a net.Addr) uint16 { return uint16(a.(*net.TCPAddr).Port) }

// dialer has keepalive off: a keepalive probe would be one more thing on the
// wire that the experiments do not ask for.
var dialer = net.Dialer{KeepAlive: -1, Timeout: 2 * time.Second}

// dial connects to addr.
func dial(ctx context.Context, addr string) (*net.TCPConn, error) {
	c, err := dialer.DialContext(ctx, "tcp4", addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// pair opens one connection to ln and returns both ends.
func pair(ctx context.Context, ln *net.TCPListener) (client, server *net.TCPConn, err error) {
	type acc struct {
		c   *net.TCPConn
		err error
	}
	ch := make(chan acc, 1)
	go func() {
		_ = ln.SetDeadline(time.Now().Add(3 * time.Second))
		c, err := ln.AcceptTCP()
		ch <- acc{c, err}
	}()
	client, err = dial(ctx, ln.Addr().String())
	a := <-ch
	if err != nil {
		if a.c != nil {
			a.c.Close()
		}
		return nil, nil, err
	}
	if a.err != nil {
		client.Close()
		return nil, nil, a.err
	}
	_ = a.c.SetKeepAlive(false)
	return client, a.c, nil
}

// pairs opens n connections to ln.
func pairs(ctx context.Context, ln *net.TCPListener, n int) (clients, servers []*net.TCPConn, err error) {
	for i := 0; i < n; i++ {
		c, s, err := pair(ctx, ln)
		if err != nil {
			closeAll(clients)
			closeAll(servers)
			return nil, nil, err
		}
		clients, servers = append(clients, c), append(servers, s)
	}
	return clients, servers, nil
}

func closeAll(cs []*net.TCPConn) {
	for _, c := range cs {
		if c != nil {
			c.Close()
		}
	}
}

// errName names what an I/O call returned the way the kernel would:
// "nil", "EOF", "ECONNRESET", "EPIPE", "ENOTCONN", "timeout", or the text.
func errName(err error) string {
	if err == nil {
		return "nil"
	}
	if errors.Is(err, io.EOF) {
		return "EOF"
	}
	if errors.Is(err, net.ErrClosed) {
		return "net.ErrClosed"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		if n := unix.ErrnoName(errno); n != "" {
			return n
		}
		return errno.Error()
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return "timeout"
	}
	return err.Error()
}

// readAll reads c to EOF or error within d and returns the byte count and
// the error that ended it (nil for EOF).
func readAll(c *net.TCPConn, d time.Duration) (int64, error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	n, err := io.Copy(io.Discard, c)
	return n, err
}

// readUntilErr reads until an error and returns the bytes read and the final
// error (io.EOF for an orderly end).
func readUntilErr(c *net.TCPConn, d time.Duration) (int64, error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 32<<10)
	var total int64
	for {
		n, err := c.Read(buf)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
}

// waitUntil polls cond every 20 ms until it holds or d passes; it reports
// whether cond held.
func waitUntil(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// side selects the sockets of one end of the experiment's connections.
type side func(Socket) bool

// serverSide is every socket whose local port is the listener's.
func serverSide(port uint16) side {
	return func(s Socket) bool { return s.Local.Port() == port && s.State != "LISTEN" }
}

// clientSide is every socket connected to the listener's port.
func clientSide(port uint16) side {
	return func(s Socket) bool { return s.Remote.Port() == port }
}

// localPorts selects sockets by their local port.
func localPorts(ports map[uint16]bool) side {
	return func(s Socket) bool { return ports[s.Local.Port()] }
}

// portsOf collects the local ports of conns.
func portsOf(cs []*net.TCPConn) map[uint16]bool {
	m := make(map[uint16]bool, len(cs))
	for _, c := range cs {
		m[portOf(c.LocalAddr())] = true
	}
	return m
}

// rawFd runs f with the file descriptor of a connection or listener.
func rawFd(c syscall.Conn, f func(fd int) error) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// statesOr reads state counts, turning an error into a printable note.
func (e *Env) statesOr(keep side) (map[string]int, string) {
	m, err := e.States(keep)
	if err != nil {
		return map[string]int{}, fmt.Sprintf("unreadable: %v", err)
	}
	return m, fmtStates(m)
}

// serveEOFClose accepts connections on ln until stopped; each is read to
// EOF (or for at most 5 s) and then closed, so the client, which closes
// first, is the side that holds TIME_WAIT. stop closes ln and waits.
func serveEOFClose(ln *net.TCPListener) (stop func()) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				time.Sleep(time.Millisecond) // EMFILE and the like: do not spin
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = readAll(c, 5*time.Second)
				c.Close()
			}()
		}
	}()
	return func() {
		ln.Close()
		wg.Wait()
	}
}
