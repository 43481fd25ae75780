package workload

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/closeload/closeload/collector"
	"golang.org/x/sys/unix"
)

// StormTargetConfig configures the built-in target of a storm: it accepts
// and keeps every connection (epoll, no thread per connection) and plays
// the target's side of the storm's close.
type StormTargetConfig struct {
	// Listen is the address to listen on; port 0 picks one (see Addr).
	Listen netip.AddrPort
	// Scenario and Closer are the storm's: they say which side sends the
	// FINs and what the target does when the client's FIN comes.
	Scenario Scenario
	Closer   Closer
	// Window spreads the target's FINs (closer server or both).
	Window time.Duration
	// Hold is close-wait-leak's CLOSE_WAIT time when the client closes.
	Hold time.Duration
	// ResponseSize bytes answer the client's FIN (client-halfclose).
	ResponseSize int
	// ReusePort lets the processes of a sharded storm share the port, the
	// kernel spreading connections over their listeners.
	ReusePort bool
	// Backlog is the listen backlog; 0: 4096, enough for an unpaced opening.
	Backlog int
	// Acceptors and Reapers default to 2 each.
	Acceptors, Reapers int
}

// errTableFull is the error of connections a storm target refused because
// its connection table was full.
var errTableFull = errors.New("storm target: connection table full")

// StormTarget is a running storm target.
type StormTarget struct {
	cfg      StormTargetConfig
	side     *side
	lfd      int
	addr     netip.AddrPort
	wg       sync.WaitGroup
	stopping atomic.Bool
	release  func()
	once     sync.Once
}

// StartStormTarget listens and starts accepting. The sink receives the
// target's drain (closer server), under scenario index 0.
func StartStormTarget(cfg StormTargetConfig, sink *collector.LatencySink) (*StormTarget, error) {
	if _, ok := StormCloser(cfg.Scenario); !ok {
		return nil, fmt.Errorf("%w: a storm cannot play %s", ErrConfig, cfg.Scenario)
	}
	if cfg.Acceptors <= 0 {
		cfg.Acceptors = 2
	}
	if cfg.Backlog == 0 {
		cfg.Backlog = 4096
	}
	cfg.Reapers = reapersFor(cfg.Reapers)
	l, err := openListener(cfg.Listen, TargetConfig{ReusePort: cfg.ReusePort, Backlog: cfg.Backlog})
	if err != nil {
		return nil, err
	}
	s, err := newSide(false, cfg.Reapers, sink)
	if err != nil {
		rawClose(l.fd)
		return nil, fmt.Errorf("storm target: epoll: %w", err)
	}
	s.closes = cfg.Closer != CloserClient
	s.drain = cfg.Closer == CloserServer
	s.leaks = cfg.Scenario == CloseWaitLeak && cfg.Closer == CloserClient
	s.leak = cfg.Hold
	s.window = int64(cfg.Window)
	if cfg.Scenario == ClientHalfClose && cfg.Closer == CloserClient {
		s.respond = makeResponse(cfg.ResponseSize)
	}
	t := &StormTarget{cfg: cfg, side: s, lfd: l.fd, addr: l.addr}
	s.startHolder()
	s.startReapers()
	t.release = reserveProcs(cfg.Acceptors + cfg.Reapers)
	for range cfg.Acceptors {
		t.wg.Add(1)
		go t.accept()
	}
	return t, nil
}

// Addr is the listening address.
func (t *StormTarget) Addr() netip.AddrPort { return t.addr }

func (t *StormTarget) accept() {
	defer t.wg.Done()
	s := t.side
	acceptLoop(t.lfd, &t.stopping, func(fd int) {
		s.c.attempts.Add(1)
		i := int(s.n.Add(1) - 1)
		if i >= maxTableConns {
			rawClose(fd)
			s.count(errTableFull)
			return
		}
		_ = s.publish(i, fd, now())
	}, func(e unix.Errno) { s.count(e) })
}

// ScheduleClose tells the target the storm's close time and deadline: with
// closer server or both it sends its FINs from closeAt over the window;
// connections not gone by the deadline count as timeouts.
func (t *StormTarget) ScheduleClose(closeAt, deadline time.Time) {
	t.side.scheduleClose(monoOf(closeAt), monoOf(deadline))
}

// Live returns how many connections the target holds now.
func (t *StormTarget) Live() int { return int(max(t.side.c.held.Load(), 0)) }

// Counts returns the target's counters: Attempts are accepts.
func (t *StormTarget) Counts() StormSideCounts { return t.side.snapshot() }

// Example returns the first error message of class c the target saw.
func (t *StormTarget) Example(c ErrorClass) string { return t.side.ex.Example(c) }

// Close stops accepting and ends every connection still open (counted as
// interrupted, or timed out past the deadline).
func (t *StormTarget) Close() {
	t.once.Do(func() {
		t.stopping.Store(true)
		_ = rawShutdown(t.lfd, unix.SHUT_RDWR)
		t.wg.Wait()
		rawClose(t.lfd)
		t.side.stopAll()
		t.release()
	})
}
