package verify

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

var claimCloseWriteTwice = Claim{
	Name:      "closewrite-twice",
	Statement: "Calling CloseWrite twice may panic.",
	Source:    "seed article §1 (多次调用 CloseWrite() … 重复调用可能引发 panic)",
	Run:       runCloseWriteTwice,
}

// callCloseWrite calls CloseWrite and turns a panic into a value.
func callCloseWrite(c *net.TCPConn) (res string, panicked bool) {
	defer func() {
		if p := recover(); p != nil {
			res, panicked = fmt.Sprintf("PANIC: %v", p), true
		}
	}()
	return errName(c.CloseWrite()), false
}

// rawShutdown is shutdown(fd, SHUT_WR) with the errno it returned.
func rawShutdown(c *net.TCPConn) string {
	var serr error
	if err := rawFd(c, func(fd int) error { serr = unix.Shutdown(fd, unix.SHUT_WR); return nil }); err != nil {
		return errName(err)
	}
	return errName(serr)
}

// runCloseWriteTwice calls CloseWrite twice in each situation a program can
// be in: right away, after the peer has closed too, with the peer's FIN
// received first, and after one's own Close; plus shutdown(2) itself twice.
func runCloseWriteTwice(ctx context.Context, env *Env) Result {
	var r Result
	ln, err := listen(0)
	if err != nil {
		return failed(r, err)
	}
	defer ln.Close()
	panics := 0
	note := func(what string, calls ...func() (string, bool)) {
		var parts []string
		for i, call := range calls {
			v, p := call()
			if p {
				panics++
			}
			parts = append(parts, fmt.Sprintf("%s call: %s", ordinal(i), v))
		}
		r.add(what, "%s", strings.Join(parts, "; "))
	}
	cw := func(c *net.TCPConn) func() (string, bool) { return func() (string, bool) { return callCloseWrite(c) } }
	raw := func(c *net.TCPConn) func() (string, bool) {
		return func() (string, bool) { return rawShutdown(c), false }
	}

	// 1. Twice in a row on an open connection.
	c, s, err := pair(ctx, ln)
	if err != nil {
		return failed(r, err)
	}
	note("CloseWrite twice in a row", cw(c), cw(c))
	s.Close()
	c.Close()

	// 2. shutdown(SHUT_WR) twice at the syscall level.
	c, s, err = pair(ctx, ln)
	if err != nil {
		return failed(r, err)
	}
	note("shutdown(fd, SHUT_WR) twice", raw(c), raw(c))
	s.Close()
	c.Close()

	// 3. Once, then again after the peer has closed as well: the socket has
	// gone to TIME_WAIT and the descriptor's socket is CLOSE.
	c, s, err = pair(ctx, ln)
	if err != nil {
		return failed(r, err)
	}
	first, p := callCloseWrite(c)
	if p {
		panics++
	}
	_, _ = readAll(s, 2*time.Second)
	s.Close()
	_, eofErr := readAll(c, 2*time.Second)
	_, st := env.statesOr(func(x Socket) bool { return x.Local.Port() == portOf(c.LocalAddr()) })
	second, p := callCloseWrite(c)
	if p {
		panics++
	}
	r.add("CloseWrite, then again after the peer closed", "1st call: %s; peer closed, own read got %s, own socket now %s; 2nd call: %s",
		first, eofOrErr(eofErr), st, second)
	c.Close()
	afterPeer := second

	// 4. Peer closes first (own socket in CLOSE_WAIT), then CloseWrite twice.
	c, s, err = pair(ctx, ln)
	if err != nil {
		return failed(r, err)
	}
	s.Close()
	_, _ = readAll(c, 2*time.Second)
	note("peer closed first, then CloseWrite twice", cw(c), func() (string, bool) {
		time.Sleep(50 * time.Millisecond) // let the last ACK arrive: LAST_ACK → CLOSED
		return callCloseWrite(c)
	})
	c.Close()

	// 5. After one's own Close.
	c, s, err = pair(ctx, ln)
	if err != nil {
		return failed(r, err)
	}
	c.Close()
	note("CloseWrite after Close", cw(c), cw(c))
	s.Close()

	switch {
	case panics == 0:
		r.Verdict = DoesNotHold
		r.Finding = fmt.Sprintf("no call panicked: a second CloseWrite returns nil (shutdown(2) returns 0 again); once the peer has closed too it returns %s; after Close, net.ErrClosed", afterPeer)
	default:
		r.Verdict = Holds
		r.Finding = fmt.Sprintf("%d call(s) panicked", panics)
	}
	return r
}

func eofOrErr(err error) string {
	if err == nil {
		return "EOF"
	}
	return errName(err)
}

func ordinal(i int) string {
	return [...]string{"1st", "2nd", "3rd"}[min(i, 2)]
}
