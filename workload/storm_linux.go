package workload

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/closeload/closeload/internal/ctxtime"

	"github.com/closeload/closeload/collector"
)

// StormConfig is one process's part of a storm: open N connections, hold
// them, then half-close them all within Window from the Closer's side.
type StormConfig struct {
	// N is the connections this process opens.
	N int
	// Rate paces the opening (connections per second); 0 opens as fast as
	// the dialers go.
	Rate float64
	// Target is where the connections go (the built-in StormTarget or an
	// external server).
	Target netip.AddrPort
	// Sources are the local addresses the connections are spread over
	// (IP_BIND_ADDRESS_NO_PORT); empty: the kernel chooses.
	Sources []netip.Addr
	// Scenario is one of those StormCloser accepts: client-halfclose
	// (the target answers the FIN with ResponseSize bytes and closes),
	// server-halfclose, simultaneous, close-wait-leak (the side receiving
	// the FIN keeps CLOSE_WAIT for Hold before it closes).
	Scenario Scenario
	// Closer is the side that sends the FINs at the close time.
	Closer Closer
	// Hold is how long the connections stay open, from the end of the
	// opening to the close time (unless Ready says otherwise), and how
	// long close-wait-leak keeps CLOSE_WAIT.
	Hold time.Duration
	// Window spreads the FINs evenly over it; 0 sends them at once.
	Window time.Duration
	// Timeout bounds each connect, and how long after the window (and the
	// leak) connections may take to end before they count as timeouts.
	Timeout time.Duration
	// StartAt delays the first dial (shards start together); zero: now.
	StartAt time.Time
	// Ready, when set, is called once this process has opened its share;
	// it returns the close time (the shards of a storm agree on one). Nil:
	// Hold from now.
	Ready func(ctx context.Context, opened StormSideCounts) (time.Time, error)
	// OnClose, when set, is told the close time and the deadline before the
	// first FIN (the built-in target schedules its own FINs from them).
	OnClose func(closeAt, deadline time.Time)
	// Dialers and Reapers default to 4 and 2.
	Dialers, Reapers int
}

// Storm is the client side of a storm in this process.
type Storm struct {
	cfg      StormConfig
	side     *side
	srcs     []sockaddr
	dst      sockaddr
	dialStop atomic.Bool

	mu        sync.Mutex
	openStart time.Time
	openEnd   time.Time
	closeAt   time.Time
	deadline  time.Time
}

// NewStorm checks cfg and prepares the client side.
func NewStorm(cfg StormConfig, sink *collector.LatencySink) (*Storm, error) {
	if cfg.N < 0 || cfg.N > maxTableConns {
		return nil, fmt.Errorf("%w: storm of %d connections: want 0 to %d", ErrConfig, cfg.N, maxTableConns)
	}
	if _, ok := StormCloser(cfg.Scenario); !ok {
		return nil, fmt.Errorf("%w: a storm cannot play %s", ErrConfig, cfg.Scenario)
	}
	if cfg.Rate < 0 || cfg.Hold < 0 || cfg.Window < 0 {
		return nil, fmt.Errorf("%w: negative rate, hold or window", ErrConfig)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Dialers <= 0 {
		cfg.Dialers = 4
	}
	cfg.Reapers = reapersFor(cfg.Reapers)
	st := &Storm{cfg: cfg, dst: makeSockaddr(cfg.Target)}
	for _, a := range cfg.Sources {
		sa := makeSockaddr(netip.AddrPortFrom(a, 0))
		if sa.family != st.dst.family {
			return nil, fmt.Errorf("%w: sources are %s but target %s is not", ErrConfig, familyName(sa.family), cfg.Target)
		}
		st.srcs = append(st.srcs, sa)
	}
	s, err := newSide(true, cfg.Reapers, sink)
	if err != nil {
		return nil, fmt.Errorf("storm: epoll: %w", err)
	}
	s.closes = cfg.Closer != CloserServer
	s.drain = s.closes
	s.leaks = cfg.Scenario == CloseWaitLeak && cfg.Closer == CloserServer
	s.leak = cfg.Hold
	s.window = int64(cfg.Window)
	s.n.Store(int64(cfg.N))
	st.side = s
	return st, nil
}

// stormLeak is how long the passive side of scenario s keeps CLOSE_WAIT.
func stormLeak(s Scenario, hold time.Duration) time.Duration {
	if s == CloseWaitLeak {
		return hold
	}
	return 0
}

// StormDeadline is when connections of a storm that closes at closeAt
// count as timed out: after the window, the leak and the timeout.
func StormDeadline(closeAt time.Time, cfg StormConfig) time.Time {
	return closeAt.Add(cfg.Window + stormLeak(cfg.Scenario, cfg.Hold) + cfg.Timeout)
}

// Run opens the connections, holds them, closes them and waits until every
// one is gone or the deadline passes. After ctx ends, no connection is
// opened and those open are closed and counted as interrupted.
func (st *Storm) Run(ctx context.Context) error {
	s := st.side
	cfg := st.cfg
	defer reserveProcs(cfg.Dialers + cfg.Reapers)()
	s.startHolder()
	s.startReapers()
	defer s.stopAll()
	stopDial := context.AfterFunc(ctx, func() { st.dialStop.Store(true) })
	defer stopDial()

	var untilStart time.Duration
	if !cfg.StartAt.IsZero() {
		untilStart = time.Until(cfg.StartAt)
	}
	// Also when ctx has already ended: the AfterFunc above sets dialStop
	// on a goroutine of its own, perhaps after the first dials.
	if err := ctxtime.Sleep(ctx, untilStart); err != nil {
		st.skipAll()
		return err
	}
	st.mu.Lock()
	st.openStart = time.Now()
	st.mu.Unlock()
	t0 := now()
	var wg sync.WaitGroup
	for d := range cfg.Dialers {
		wg.Add(1)
		go func() { defer wg.Done(); st.dial(d, t0) }()
	}
	wg.Wait()
	s.done.Store(true)
	st.mu.Lock()
	st.openEnd = time.Now()
	st.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}

	closeAt := time.Now().Add(cfg.Hold)
	if cfg.Ready != nil {
		var err error
		if closeAt, err = cfg.Ready(ctx, s.snapshot()); err != nil {
			return err
		}
	}
	deadline := StormDeadline(closeAt, cfg)
	st.mu.Lock()
	st.closeAt, st.deadline = closeAt, deadline
	st.mu.Unlock()
	if cfg.OnClose != nil {
		cfg.OnClose(closeAt, deadline)
	}
	s.scheduleClose(monoOf(closeAt), monoOf(deadline))

	reaped := make(chan struct{})
	go func() { s.wg.Wait(); close(reaped) }()
	select {
	case <-reaped:
	case <-ctx.Done():
		s.stop.Store(true)
		<-reaped
		return ctx.Err()
	}
	// Leaking connections are the holder's: wait for their leak to end.
	for s.holder != nil && s.holder.held() > 0 && time.Now().Before(deadline) {
		if err := ctxtime.Sleep(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// skipAll marks every connection as never opened (stopped before dialing).
func (st *Storm) skipAll() {
	for i := range st.cfg.N {
		st.side.skip(i)
	}
	st.side.done.Store(true)
}

// dial opens dialer d's share: connections d, d+D, d+2D, ... Each is
// paced by the rate from t0 (its intended start, from which its total
// phase counts), bound to its source and published to its reaper.
func (st *Storm) dial(d int, t0 int64) {
	s := st.side
	cfg := &st.cfg
	rec := s.sink.NewRecorder()
	defer rec.Flush()
	var gap float64
	if cfg.Rate > 0 {
		gap = 1e9 / cfg.Rate
	}
	k := uint64(0)
	for i := d; i < cfg.N; i += cfg.Dialers {
		if st.dialStop.Load() {
			s.skip(i)
			continue
		}
		intended := now()
		if gap > 0 {
			intended = t0 + int64(gap*float64(i))
			for !st.dialStop.Load() {
				w := intended - now()
				if w <= 0 {
					break
				}
				time.Sleep(time.Duration(min(w, int64(50*time.Millisecond))))
			}
			if st.dialStop.Load() {
				s.skip(i)
				continue
			}
			if now()-intended > lateThreshold {
				s.c.late.Add(1)
			}
		}
		s.c.attempts.Add(1)
		start := now()
		fd, err := st.connect(i)
		if err != nil {
			s.skip(i)
			s.count(err)
			continue
		}
		tm := collector.Timings{collector.PhaseConnect: max(now()-start, 1)}
		rec.Record(0, &tm)
		_ = s.publish(i, fd, intended)
		yieldEvery(k)
		k++
	}
}

// connect opens, binds (IP_BIND_ADDRESS_NO_PORT) and connects one socket;
// SO_SNDTIMEO bounds the connect.
func (st *Storm) connect(i int) (int, error) {
	fd, err := rawSocket(st.dst.family)
	if err != nil {
		return -1, err
	}
	if n := len(st.srcs); n > 0 {
		if err := rawBindNoPort(fd, &st.srcs[i%n]); err != nil {
			rawClose(fd)
			return -1, err
		}
	}
	if err := rawSetTimeouts(fd, st.cfg.Timeout); err != nil {
		rawClose(fd)
		return -1, err
	}
	if err := sysConnect(fd, &st.dst, st.cfg.Timeout); err != nil {
		rawClose(fd)
		return -1, err
	}
	return fd, nil
}

// Counts returns the client side's counters; live while the storm runs.
func (st *Storm) Counts() StormSideCounts { return st.side.snapshot() }

// Held returns how many connections the client holds open now.
func (st *Storm) Held() int { return int(max(st.side.c.held.Load(), 0)) }

// Example returns the first error message of class c.
func (st *Storm) Example(c ErrorClass) string { return st.side.ex.Example(c) }

// Times returns when the opening started and ended, the close time and the
// deadline; zero until reached.
func (st *Storm) Times() (openStart, openEnd, closeAt, deadline time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.openStart, st.openEnd, st.closeAt, st.deadline
}
