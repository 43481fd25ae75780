package workload

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TargetConfig configures the built-in target: the server halves of the
// scenarios, one listener per scenario so the target knows which half to
// play from the port alone (no header in the byte stream, so any client,
// crr or nc, can drive it) and so socket states can be told apart per
// scenario.
type TargetConfig struct {
	// Listen is the first address; scenario k of Scenarios listens on port
	// Listen.Port()+k, or on a free port each when Listen.Port() is 0.
	Listen    netip.AddrPort
	Scenarios []Scenario
	// Acceptors is the number of threads accepting and serving on each
	// listener; each serves one connection at a time, like crr's server.
	Acceptors    int
	RequestSize  int
	ResponseSize int
	Hold         time.Duration
	Timeout      time.Duration
	// MaxHeld bounds connections held at once (descriptors).
	MaxHeld int
	// ReusePort sets SO_REUSEPORT so several processes share the ports.
	ReusePort bool
	Backlog   int
}

// Target is a running built-in target.
type Target struct {
	cfg       TargetConfig
	listeners []*listener
	holder    *holder
	wg        sync.WaitGroup
	response  []byte
	stopping  atomic.Bool
	stopOnce  sync.Once
	release   func()
	releaseFD func()
}

type listener struct {
	fd       int
	scenario Scenario
	addr     netip.AddrPort
	acc      []*acceptor
	examples errorExamples
}

type acceptor struct {
	c     sideCounters
	curFD atomic.Int32
	// phase and stopped work as a worker's: what the connection in
	// progress waits for, and the phase Close found it in.
	phase   atomic.Uint32
	stopped atomic.Uint32
	buf     []byte
	o       outcome // the connection in progress, not allocated per connection
}

// StartTarget opens the listeners and starts the acceptors.
func StartTarget(cfg TargetConfig) (*Target, error) {
	if len(cfg.Scenarios) == 0 {
		return nil, errors.New("target: no scenario")
	}
	if cfg.Acceptors < 1 {
		cfg.Acceptors = 1
	}
	if cfg.Backlog == 0 {
		cfg.Backlog = 4096
	}
	if cfg.MaxHeld == 0 {
		cfg.MaxHeld = defaultMaxHeld()
	}
	t := &Target{cfg: cfg, response: makeResponse(cfg.ResponseSize)}
	fixed := len(cfg.Scenarios) * (1 + cfg.Acceptors)
	holdCap := 0
	for _, s := range cfg.Scenarios {
		if s == OrphanFinWait2 || s == CloseWaitLeak {
			holdCap = holderCapacity(cfg.MaxHeld, fixed)
		}
	}
	release, err := claimFDs(fixed+holdCap, fmt.Sprintf("target: %d listeners with %d acceptors each and a holder of %d connections",
		len(cfg.Scenarios), cfg.Acceptors, holdCap))
	if err != nil {
		return nil, err
	}
	t.releaseFD = release
	t.holder = newHolder(max(holdCap, 1), t.onHeldClose)
	for k, s := range cfg.Scenarios {
		port := cfg.Listen.Port()
		if port != 0 {
			if int(port)+k > 65535 {
				t.Close()
				return nil, fmt.Errorf("target: port %d+%d is past 65535", port, k)
			}
			port += uint16(k)
		}
		l, err := openListener(netip.AddrPortFrom(cfg.Listen.Addr(), port), cfg)
		if err != nil {
			t.Close()
			return nil, err
		}
		l.scenario = s
		t.listeners = append(t.listeners, l)
	}
	t.release = reserveProcs(len(t.listeners) * cfg.Acceptors)
	for _, l := range t.listeners {
		for range cfg.Acceptors {
			a := &acceptor{buf: make([]byte, 64<<10)}
			a.curFD.Store(-1)
			l.acc = append(l.acc, a)
			t.wg.Add(1)
			go t.accept(l, a)
		}
	}
	return t, nil
}

func openListener(ap netip.AddrPort, cfg TargetConfig) (*listener, error) {
	sa := makeSockaddr(ap)
	fd, err := rawSocket(sa.family)
	if err != nil {
		return nil, fmt.Errorf("target: socket: %w", err)
	}
	fail := func(what string, err error) (*listener, error) {
		rawClose(fd)
		return nil, fmt.Errorf("target: %s %s: %w", what, ap, err)
	}
	if err := rawSetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail("SO_REUSEADDR", err)
	}
	if cfg.ReusePort {
		if err := rawSetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return fail("SO_REUSEPORT", err)
		}
	}
	// Accepted sockets inherit the listener's timeouts: one setsockopt per
	// listener instead of two per connection.
	if err := rawSetTimeouts(fd, cfg.Timeout); err != nil {
		return fail("timeouts", err)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_BIND, uintptr(fd), uintptr(unsafe.Pointer(&sa.raw[0])), sa.len); e != 0 {
		return fail("bind", e)
	}
	if err := unix.Listen(fd, cfg.Backlog); err != nil {
		return fail("listen", err)
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	l := &listener{fd: fd, addr: ap}
	switch a := got.(type) {
	case *unix.SockaddrInet4:
		l.addr = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		l.addr = netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
	}
	return l, nil
}

// Addrs returns the listening address of each scenario, in config order.
func (t *Target) Addrs() []netip.AddrPort {
	out := make([]netip.AddrPort, len(t.listeners))
	for i, l := range t.listeners {
		out[i] = l.addr
	}
	return out
}

// Addr returns the listening address of scenario s.
func (t *Target) Addr(s Scenario) (netip.AddrPort, bool) {
	for _, l := range t.listeners {
		if l.scenario == s {
			return l.addr, true
		}
	}
	return netip.AddrPort{}, false
}

// Counts returns what the target counted for scenario s; Cycles are
// connections it served to their end. Attempts counts accepts, failed ones
// (EMFILE) included, so that after Close Attempts = Cycles + ErrorTotal() +
// UnfinishedTotal(): Unfinished are connections Close found in progress.
func (t *Target) Counts(s Scenario) Counts {
	var c Counts
	for _, l := range t.listeners {
		if l.scenario != s {
			continue
		}
		for _, a := range l.acc {
			c.add(&a.c)
		}
	}
	return c
}

// Example returns the first error message of class c the target saw for s.
func (t *Target) Example(s Scenario, c ErrorClass) string {
	for _, l := range t.listeners {
		if l.scenario == s {
			return l.examples.Example(c)
		}
	}
	return ""
}

// Held returns how many connections the target holds open now.
func (t *Target) Held() int { return t.holder.held() }

// HoldWaits returns how often and how long acceptors waited for room in
// the target's full holder: back-pressure that paces the whole run (the
// clients' connections queue in the listen backlog meanwhile).
func (t *Target) HoldWaits() HoldWaits { return t.holder.holdWaits() }

// Close stops accepting, ends connections in progress and closes held ones.
func (t *Target) Close() {
	t.stopOnce.Do(func() {
		t.stopping.Store(true)
		for _, l := range t.listeners {
			// shutdown wakes acceptors blocked in accept(); close follows
			// once they have left.
			_ = rawShutdown(l.fd, unix.SHUT_RDWR)
			for _, a := range l.acc {
				if ph := a.phase.Load(); ph != phaseIdle {
					a.stopped.Store(ph)
				}
				if fd := a.curFD.Load(); fd >= 0 {
					_ = rawShutdown(int(fd), unix.SHUT_RDWR)
				}
			}
		}
		if t.holder != nil {
			// Closes held connections and releases acceptors waiting for
			// room in a full holder.
			t.holder.stop()
		}
		done := make(chan struct{})
		go func() { t.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			// A connection stuck past its timeout: shut it once more.
			for _, l := range t.listeners {
				for _, a := range l.acc {
					if fd := a.curFD.Load(); fd >= 0 {
						_ = rawShutdown(int(fd), unix.SHUT_RDWR)
					}
				}
			}
			<-done
		}
		for _, l := range t.listeners {
			rawClose(l.fd)
		}
		if t.release != nil {
			t.release()
		}
		if t.releaseFD != nil {
			t.releaseFD()
		}
	})
}

func (t *Target) onHeldClose(c heldConn) {}

func (t *Target) accept(l *listener, a *acceptor) {
	defer t.wg.Done()
	serve := serverHalves[l.scenario]
	acceptLoop(l.fd, &t.stopping, func(fd int) {
		a.c.attempts.Add(1)
		a.curFD.Store(int32(fd))
		a.phase.Store(phaseOf(StopFirstByte))
		a.o = outcome{}
		o := &a.o
		serve(t, a, fd, o)
		a.curFD.Store(-1)
		a.phase.Store(phaseIdle)
		if ph := a.stopped.Swap(phaseIdle); ph != phaseIdle {
			o.unfinished = ph
		}
		if o.unfinished != phaseIdle {
			a.c.unfinished[o.unfinished-1].Add(1)
			return
		}
		a.c.sent.Add(o.sent)
		a.c.received.Add(o.received)
		if o.eof {
			a.c.eof.Add(1)
		}
		if o.reset {
			a.c.reset.Add(1)
		}
		if o.err != nil {
			cl := Classify(o.err)
			a.c.errors[cl].Add(1)
			l.examples.note(cl, o.err)
			return
		}
		a.c.cycles.Add(1)
	}, func(e unix.Errno) {
		cl := Classify(e)
		a.c.attempts.Add(1)
		a.c.errors[cl].Add(1)
		l.examples.note(cl, e)
	})
}

// serverReadToEOF reads until the client's FIN.
func serverReadToEOF(a *acceptor, fd int, o *outcome) error {
	for {
		n, err := sysRead(fd, a.buf)
		if err != nil {
			return err
		}
		if n == 0 {
			o.eof = true
			return nil
		}
		o.received += uint64(n)
	}
}

func serverReadN(a *acceptor, fd int, want int, o *outcome) error {
	for int(o.received) < want {
		n, err := sysRead(fd, a.buf[:min(len(a.buf), want-int(o.received))])
		if err != nil {
			return err
		}
		if n == 0 {
			o.eof = true
			return ErrShortRead
		}
		o.received += uint64(n)
	}
	return nil
}

// respond writes the response; what follows waits for the client's EOF.
func (t *Target) respond(a *acceptor, fd int, o *outcome) error {
	n, err := sendAll(fd, t.response)
	o.sent += uint64(n)
	a.phase.Store(phaseOf(StopDrain))
	return err
}

type serverHalf func(t *Target, a *acceptor, fd int, o *outcome)

var serverHalves = [numScenarios]serverHalf{
	ClientHalfClose: clientHalfCloseServer,
	ServerHalfClose: serverHalfCloseServer,
	Simultaneous:    serverHalfCloseServer,
	FullClose:       fullCloseServer,
	Linger0:         linger0Server,
	UnreadClose:     unreadCloseServer,
	OrphanFinWait2:  holdServer,
	CloseWaitLeak:   holdServer,
	StreamEcho:      streamEchoServer,
}

// read to EOF; write response; Close.
func clientHalfCloseServer(t *Target, a *acceptor, fd int, o *outcome) {
	defer rawClose(fd)
	if o.err = serverReadToEOF(a, fd, o); o.err != nil {
		return
	}
	o.err = t.respond(a, fd, o)
}

// write response; CloseWrite; read to EOF; Close. Played at once after
// accept, it is also the target half of simultaneous.
func serverHalfCloseServer(t *Target, a *acceptor, fd int, o *outcome) {
	defer rawClose(fd)
	if o.err = t.respond(a, fd, o); o.err != nil {
		return
	}
	if o.err = rawShutdown(fd, unix.SHUT_WR); o.err != nil {
		return
	}
	o.err = serverReadToEOF(a, fd, o)
}

// read request; write response; read to EOF; Close.
func fullCloseServer(t *Target, a *acceptor, fd int, o *outcome) {
	defer rawClose(fd)
	if o.err = serverReadN(a, fd, t.cfg.RequestSize, o); o.err != nil {
		return
	}
	if o.err = t.respond(a, fd, o); o.err != nil {
		return
	}
	o.err = serverReadToEOF(a, fd, o)
}

// read request; write response; read to EOF or the client's RST; Close.
func linger0Server(t *Target, a *acceptor, fd int, o *outcome) {
	defer rawClose(fd)
	if o.err = serverReadN(a, fd, t.cfg.RequestSize, o); o.err != nil {
		return
	}
	if o.err = t.respond(a, fd, o); o.err != nil {
		return
	}
	err := serverReadToEOF(a, fd, o)
	if errors.Is(err, unix.ECONNRESET) {
		o.reset = true
		err = nil
	}
	o.err = err
}

// UnreadKeep returns how much of an unread-close request the target reads:
// half of it, so the rest is unread when it closes.
func UnreadKeep(requestSize int) int { return max(1, requestSize/2) }

// read part of the request; write response; Close with unread data: RST.
func unreadCloseServer(t *Target, a *acceptor, fd int, o *outcome) {
	defer rawClose(fd)
	if o.err = serverReadN(a, fd, UnreadKeep(t.cfg.RequestSize), o); o.err != nil {
		return
	}
	if o.err = t.respond(a, fd, o); errors.Is(o.err, unix.ECONNRESET) || errors.Is(o.err, unix.EPIPE) {
		o.reset, o.err = true, nil
	}
}

// read to EOF; hold for --hold (never closing before); Close. The holder
// keeps the descriptor, so the acceptor is free at once.
func holdServer(t *Target, a *acceptor, fd int, o *outcome) {
	if o.err = serverReadToEOF(a, fd, o); o.err != nil {
		rawClose(fd)
		return
	}
	a.phase.Store(phaseOf(StopHeld))
	if !t.holder.add(heldConn{fd: fd, deadline: now() + int64(t.cfg.Hold)}) {
		o.unfinished = phaseOf(StopHeld)
	}
}

// echo until EOF; Close.
func streamEchoServer(t *Target, a *acceptor, fd int, o *outcome) {
	defer rawClose(fd)
	for {
		n, err := sysRead(fd, a.buf)
		if err != nil {
			o.err = err
			return
		}
		if n == 0 {
			o.eof = true
			return
		}
		o.received += uint64(n)
		m, err := sendAll(fd, a.buf[:n])
		o.sent += uint64(m)
		if err != nil {
			o.err = err
			return
		}
	}
}

func makeResponse(n int) []byte {
	b := make([]byte, max(n, 0))
	for i := range b {
		b[i] = "0123456789abcdef"[i%16]
	}
	return b
}

// defaultMaxHeld bounds what one holder keeps: a quarter of the descriptor
// limit, less a reserve, so that a client and a built-in target in one
// process together hold at most half and connections in flight still find
// descriptors. Larger holds run over several processes (--procs).
func defaultMaxHeld() int {
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) != nil || rl.Cur == unix.RLIM_INFINITY {
		return 4096
	}
	return max(16, (int(rl.Cur)-512)/4)
}
