package verify

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

var claimLingerTimeout = Claim{
	Name:      "linger-timeout",
	Statement: "SO_LINGER {1, N>0} makes close() wait for unsent data: it blocks until the data is acknowledged or N seconds pass (and what happens then?).",
	Source:    "seed article §2.3 (SO_LINGER:控制 close() 是否等待未发送数据)",
	Run:       runLingerTimeout,
}

const (
	lingerSeconds = 1        // the timeout of the non-reading case
	lingerLong    = 5        // the timeout of the reading case, never reached
	lingerBuf     = 32 << 10 // SO_SNDBUF of the writer, SO_RCVBUF of the reader
	// lingerPeerDelay is how long into the Close the reading peer starts.
	lingerPeerDelay = 300 * time.Millisecond
)

// lingerCase is one way the writer closes and the peer behaves.
type lingerCase struct {
	name    string
	linger  int  // seconds; -1 is the default (no SO_LINGER)
	reading bool // the peer starts reading lingerPeerDelay into the Close
}

// lingerOutcome is what one case showed.
type lingerOutcome struct {
	written     int64         // bytes the writer's Write calls accepted
	queued      uint64        // the writer's send queue just before Close
	blocked     time.Duration // how long Close blocked
	closeErr    string
	after       string // the writer's socket right after Close
	afterQueued uint64 // its send queue then
	rsts        int64
	aborts      string
	delivered   int64  // bytes the peer read in the end
	peerEnd     string // how the peer's read ended
}

func (o lingerOutcome) String() string {
	return fmt.Sprintf("%d bytes written, %d in the send queue at Close; Close returned %s after %.3f s; then the writer's socket: %s (send queue %d); over the Close Tcp.OutRsts +%d, %s; the peer read %d of %d bytes, then %s",
		o.written, o.queued, o.closeErr, o.blocked.Seconds(), o.after, o.afterQueued, o.rsts, o.aborts, o.delivered, o.written, o.peerEnd)
}

// runLingerTimeout: a writer fills a peer that does not read (32 KiB
// buffers on both sides), then closes with SO_LINGER {1, 1 s}; the same
// without SO_LINGER; and with {1, 5 s} and a peer that starts reading
// 300 ms into the Close. After each Close the peer reads whatever reaches
// it, within 3 s.
func runLingerTimeout(ctx context.Context, env *Env) Result {
	var r Result
	cases := []lingerCase{
		{name: fmt.Sprintf("SO_LINGER {1, %d s}, peer not reading", lingerSeconds), linger: lingerSeconds},
		{name: "no SO_LINGER, peer not reading", linger: -1},
		{name: fmt.Sprintf("SO_LINGER {1, %d s}, peer starts reading %v into the Close", lingerLong, lingerPeerDelay), linger: lingerLong, reading: true},
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, lingerBuf) })
		if err != nil {
			return err
		}
		return serr
	}}
	l, err := lc.Listen(ctx, "tcp4", "127.0.0.1:0")
	if err != nil {
		return failed(r, err)
	}
	ln := l.(*net.TCPListener)
	defer ln.Close()
	var outs []lingerOutcome
	for _, lc := range cases {
		o, err := lingerRun(ctx, env, ln, lc)
		if err != nil {
			return failed(r, fmt.Errorf("%s: %w", lc.name, err))
		}
		outs = append(outs, o)
		r.add(lc.name, "%s", o)
	}
	timed, plain, reading := outs[0], outs[1], outs[2]
	r.figure("nonreading_blocked_seconds", timed.blocked.Seconds())
	r.figure("nonreading_queued_at_close", float64(timed.queued))
	r.figure("nonreading_rsts", float64(timed.rsts))
	r.figure("nonreading_delivered_fraction", fraction(timed.delivered, timed.written))
	r.figure("nolinger_blocked_seconds", plain.blocked.Seconds())
	r.figure("reading_blocked_seconds", reading.blocked.Seconds())
	r.figure("reading_delivered_fraction", fraction(reading.delivered, reading.written))
	waited := timed.blocked.Seconds() >= 0.9*lingerSeconds && timed.blocked.Seconds() <= lingerSeconds+0.6
	quick := reading.blocked >= lingerPeerDelay && reading.blocked.Seconds() < lingerLong/2 && reading.delivered == reading.written
	atTimeout := "at the timeout nothing was sent: no RST, no abort counter; Close returned " + timed.closeErr +
		" and the socket lived on as an orphan in " + timed.after
	if timed.rsts > 0 {
		atTimeout = fmt.Sprintf("at the timeout the kernel sent RST (Tcp.OutRsts +%d, %s)", timed.rsts, timed.aborts)
	}
	switch {
	case timed.queued == 0:
		r.Verdict = Inconclusive
		r.Finding = "the writer's send queue was empty at Close: nothing to wait for"
	case waited && quick:
		r.Verdict = Holds
		r.Finding = fmt.Sprintf("with %d bytes unsent to a peer that did not read, Close blocked %.2f s for a %d s linger (without SO_LINGER %.3f s); with a peer that began reading %v into it, it returned after %.3f s, once the data and FIN were acknowledged; %s, and the peer later read %d of %d bytes and EOF: the timeout ends the wait, not the data",
			timed.queued, timed.blocked.Seconds(), lingerSeconds, plain.blocked.Seconds(), lingerPeerDelay, reading.blocked.Seconds(), atTimeout, timed.delivered, timed.written)
	case timed.blocked < 100*time.Millisecond:
		r.Verdict = DoesNotHold
		r.Finding = fmt.Sprintf("Close returned after %.3f s despite SO_LINGER {1, %d} and %d bytes unsent", timed.blocked.Seconds(), lingerSeconds, timed.queued)
	default:
		r.Verdict = Inconclusive
		r.Finding = fmt.Sprintf("Close blocked %.2f s (linger %d s, peer not reading) and %.2f s (peer reading)", timed.blocked.Seconds(), lingerSeconds, reading.blocked.Seconds())
	}
	return r
}

func fraction(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// lingerRun measures one case on a fresh connection to ln.
func lingerRun(ctx context.Context, env *Env, ln *net.TCPListener, lc lingerCase) (lingerOutcome, error) {
	var o lingerOutcome
	c, s, err := pair(ctx, ln)
	if err != nil {
		return o, err
	}
	defer s.Close()
	defer c.Close()
	if err := c.SetWriteBuffer(lingerBuf); err != nil {
		return o, err
	}
	port := portOf(c.LocalAddr())
	self := func(x Socket) bool { return x.Local.Port() == port }
	type read struct {
		n   int64
		err error
	}
	got := make(chan read, 1)
	peerRead := func() {
		n, err := readUntilErr(s, 3*time.Second)
		got <- read{n, err}
	}
	// Fill the peer's receive buffer and our send buffer: write until a
	// write blocks for 200 ms.
	chunk := make([]byte, 16<<10)
	_ = c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	for i := 0; i < 4096; i++ {
		n, err := c.Write(chunk)
		o.written += int64(n)
		if err != nil {
			break
		}
	}
	_ = c.SetWriteDeadline(time.Time{})
	if socks, err := env.Sockets(); err == nil {
		for _, x := range socks {
			if self(x) {
				o.queued = x.TxQueue
			}
		}
	}
	if lc.linger >= 0 {
		if err := c.SetLinger(lc.linger); err != nil {
			return o, err
		}
	}
	before, err := env.takeCounters()
	if err != nil {
		return o, err
	}
	closed := make(chan time.Duration, 1)
	if lc.reading {
		go func() {
			time.Sleep(lingerPeerDelay)
			peerRead()
		}()
	}
	t0 := time.Now()
	o.closeErr = errName(c.Close())
	o.blocked = time.Since(t0)
	closed <- o.blocked
	after, err := env.takeCounters()
	if err != nil {
		return o, err
	}
	if socks, err := env.Sockets(); err == nil {
		var mine []Socket
		for _, x := range socks {
			if self(x) {
				mine = append(mine, x)
				o.afterQueued = x.TxQueue
			}
		}
		o.after = fmtStates(countStates(mine, nil))
	}
	o.rsts = delta(before, after, "Tcp.OutRsts")
	o.aborts = fmt.Sprintf("TCPAbortOnLinger +%d, TCPAbortOnData +%d, TCPAbortOnClose +%d, TCPAbortOnTimeout +%d",
		delta(before, after, "TcpExt.TCPAbortOnLinger"), delta(before, after, "TcpExt.TCPAbortOnData"),
		delta(before, after, "TcpExt.TCPAbortOnClose"), delta(before, after, "TcpExt.TCPAbortOnTimeout"))
	if !lc.reading {
		go peerRead()
	}
	res := <-got
	if lc.reading {
		o.blocked = <-closed
	}
	o.delivered, o.peerEnd = res.n, errName(res.err)
	return o, nil
}
