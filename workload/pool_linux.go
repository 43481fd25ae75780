package workload

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/closeload/closeload/collector"
	"golang.org/x/sys/unix"
)

// Config is what the pool needs; runner fills it from flags.
type Config struct {
	Mix Mix
	// Targets holds the destination of each mix entry.
	Targets []netip.AddrPort
	// Sources are spread over round robin, each bound with
	// IP_BIND_ADDRESS_NO_PORT; empty lets the kernel choose.
	Sources []netip.Addr
	// Conns is the number of workers: the concurrency of the closed loop,
	// the most connections in flight in the open loop.
	Conns int
	// Rate > 0 makes an open loop of Rate connections per second.
	Rate    float64
	Arrival Arrival
	// Duration and Cycles bound the run; either may be zero.
	Duration time.Duration
	Cycles   uint64
	// Warmup is run but left out of every figure.
	Warmup       time.Duration
	RequestSize  int
	ResponseSize int
	// Request replaces the generated request bytes (--request http|@file).
	Request []byte
	Hold    time.Duration
	Timeout time.Duration
	// Grace is how long in-flight connections may take to finish after a
	// stop before they are shut down.
	Grace   time.Duration
	MaxHeld int
	Seed    uint64
	// StallTimeout is how long the run may go without a completed
	// connection while faults (refused, reset, addr-not-available,
	// too-many-files) go on before it stops with a FaultError; zero is
	// DefaultStallTimeout, negative never stops.
	StallTimeout time.Duration
	// OnRefused says whether refusals are such a fault (stop, the default)
	// or are ridden out and recorded as outages (continue).
	OnRefused OnRefused
}

// ErrConfig is wrapped by every pool configuration error.
var ErrConfig = errors.New("invalid workload configuration")

// Pool runs the client halves over a set of workers.
type Pool struct {
	cfg          Config
	sink         *collector.LatencySink
	workers      []*worker
	client       [numScenarios]clientHalf
	request      []byte
	pattern      []byte
	clientHolder *holder
	examples     []errorExamples // per mix entry
	holderCap    int
	stop         atomic.Bool
	faulted      chan struct{} // closed when fault is set
	abort        chan struct{} // closed by Abort
	abortOnce    sync.Once
	fault        *FaultError
	mu           sync.Mutex
	warmupEnd    int64 // now() clock; connections ending before it are warm-up
	start        time.Time
	measureStart time.Time
	stopAt       time.Time // when the stop was asked, or the work ran out
	end          time.Time // when the last worker ended
	outages      []Outage
	heldClosed   []atomic.Uint64
}

// NewPool checks cfg and prepares the workers.
func NewPool(cfg Config, sink *collector.LatencySink) (*Pool, error) {
	if len(cfg.Mix.Entries) == 0 {
		return nil, fmt.Errorf("%w: empty mix", ErrConfig)
	}
	if len(cfg.Targets) != len(cfg.Mix.Entries) {
		return nil, fmt.Errorf("%w: %d targets for %d scenarios", ErrConfig, len(cfg.Targets), len(cfg.Mix.Entries))
	}
	if cfg.Conns < 1 {
		return nil, fmt.Errorf("%w: conns %d < 1", ErrConfig, cfg.Conns)
	}
	if cfg.Rate < 0 {
		return nil, fmt.Errorf("%w: negative rate", ErrConfig)
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 2 * time.Second
	}
	if cfg.MaxHeld == 0 {
		cfg.MaxHeld = defaultMaxHeld()
	}
	if cfg.StallTimeout == 0 {
		cfg.StallTimeout = DefaultStallTimeout
	}
	p := &Pool{cfg: cfg, sink: sink, client: clientHalves, pattern: makePattern(), faulted: make(chan struct{}), abort: make(chan struct{})}
	p.request = cfg.Request
	if p.request == nil {
		p.request = makeResponse(cfg.RequestSize)
	}
	p.examples = make([]errorExamples, len(cfg.Mix.Entries))
	p.heldClosed = make([]atomic.Uint64, len(cfg.Mix.Entries))
	srcs := make([]sockaddr, len(cfg.Sources))
	for i, a := range cfg.Sources {
		srcs[i] = makeSockaddr(netip.AddrPortFrom(a, 0))
	}
	dst := make([]sockaddr, len(cfg.Targets))
	for i, t := range cfg.Targets {
		dst[i] = makeSockaddr(t)
		if len(srcs) > 0 && srcs[0].family != dst[i].family {
			return nil, fmt.Errorf("%w: sources are %s but target %s is not", ErrConfig, familyName(srcs[0].family), t)
		}
	}
	for i := range cfg.Conns {
		w := &worker{id: i, pool: p, rec: sink.NewRecorder(), c: make([]sideCounters, len(cfg.Mix.Entries)),
			warm: make([]sideCounters, len(cfg.Mix.Entries)),
			buf:  make([]byte, readBuffer), srcs: srcs, dst: dst, nsrc: len(srcs)}
		// Stagger sources and mix slots so workers do not move in step.
		w.n = uint64(i)
		w.curFD.Store(-1)
		p.workers = append(p.workers, w)
	}
	if cfg.Mix.Has(CloseWaitLeak) {
		p.holderCap = holderCapacity(cfg.MaxHeld, cfg.Conns)
		p.clientHolder = newHolder(p.holderCap, func(c heldConn) {})
	}
	return p, nil
}

func familyName(f int) string {
	if f == unix.AF_INET6 {
		return "IPv6"
	}
	return "IPv4"
}

// Run runs the workload until Duration, Cycles or ctx ends it, or a fault
// does (a *FaultError wrapping ErrUnrecoverable). After the stop no
// connection starts; those in flight get Grace to finish, and those still
// in flight then are counted unfinished with the phase they were in.
func (p *Pool) Run(ctx context.Context) error {
	p.start = time.Now()
	t0 := now()
	p.mu.Lock()
	p.measureStart = p.start.Add(p.cfg.Warmup)
	p.warmupEnd = t0 + int64(p.cfg.Warmup)
	p.mu.Unlock()
	release, err := claimFDs(len(p.workers)+p.holderCap,
		fmt.Sprintf("%d workers and a holder of %d connections", len(p.workers), p.holderCap))
	if err != nil {
		p.mu.Lock()
		p.stopAt, p.end = p.start, p.start
		p.mu.Unlock()
		if p.clientHolder != nil {
			p.clientHolder.stop()
		}
		return err
	}
	defer release()
	defer reserveProcs(len(p.workers))()
	var wg sync.WaitGroup
	for _, w := range p.workers {
		wg.Add(1)
		quota := quotaOf(p.cfg.Cycles, w.id, len(p.workers))
		go func() {
			defer wg.Done()
			defer w.rec.Flush()
			if p.cfg.Rate > 0 {
				w.openLoop(t0, quota)
			} else {
				w.closedLoop(quota)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	go p.watchdog(done)
	go p.monitor(done)

	var deadline <-chan time.Time
	if p.cfg.Duration > 0 {
		t := time.NewTimer(p.cfg.Warmup + p.cfg.Duration)
		defer t.Stop()
		deadline = t.C
	}
	select {
	case <-done:
	case <-deadline:
	case <-p.faulted:
		err = p.fault
	case <-ctx.Done():
		err = ctx.Err()
	}
	p.stop.Store(true)
	p.mu.Lock()
	p.stopAt = time.Now()
	p.mu.Unlock()
	if p.clientHolder != nil {
		// The run is over: held connections close now rather than at the
		// end of their hold, and workers waiting for room are released.
		p.clientHolder.stop()
	}
	grace := time.NewTimer(p.cfg.Grace)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		p.forceStop()
		<-done
	case <-p.abort:
		p.forceStop()
		<-done
	}
	p.mu.Lock()
	p.end = time.Now()
	p.mu.Unlock()
	if p.clientHolder != nil {
		p.clientHolder.stop()
	}
	return err
}

// Stop asks the pool to start no further connection.
func (p *Pool) Stop() { p.stop.Store(true) }

// Abort ends the grace period at once (a second interrupt): connections
// still in flight are shut down and counted unfinished, and Run returns
// as soon as the workers have. Before the stop it only marks the grace
// period as over; it does not stop the run by itself.
func (p *Pool) Abort() { p.abortOnce.Do(func() { close(p.abort) }) }

// watchdog bounds every connection by --timeout: a worker publishes its
// deadline, and a connection past it is shut down, which wakes the worker
// from whatever call it blocks in. This replaces SO_SNDTIMEO/SO_RCVTIMEO,
// two system calls per connection on the hot path, by one atomic store.
// The generation check keeps it from shutting down a descriptor number the
// worker has since reused, but for a window of about 100 ns in a connection
// that was already overdue.
func (p *Pool) watchdog(done <-chan struct{}) {
	tick := time.NewTicker(min(p.cfg.Timeout/4, 100*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		t := now()
		for _, w := range p.workers {
			g := w.gen.Load()
			d := w.deadline.Load()
			fd := w.curFD.Load()
			if d == 0 || t < d || fd < 0 || w.gen.Load() != g {
				continue
			}
			w.timedOut.Store(true)
			_ = rawShutdown(int(fd), unix.SHUT_RDWR)
		}
	}
}

// forceStop shuts down the connections still in flight after the grace
// period. Each worker is told the phase its connection was in first, so
// that it counts the connection as unfinished in that phase, whatever its
// calls return after the shutdown.
func (p *Pool) forceStop() {
	for _, w := range p.workers {
		if ph := w.phase.Load(); ph != phaseIdle {
			w.stopped.Store(ph)
		}
		if fd := w.curFD.Load(); fd >= 0 {
			_ = rawShutdown(int(fd), unix.SHUT_RDWR)
		}
	}
	if p.clientHolder != nil {
		// Wakes workers waiting for room in a full holder.
		p.clientHolder.stop()
	}
}

// unbounded is the quota of a worker when --cycles is not set.
const unbounded = ^uint64(0)

// quotaOf splits n cycles exactly over workers: worker i gets
// floor((i+1)n/w) - floor(i*n/w), which may be 0. Zero n means no bound.
func quotaOf(n uint64, i, w int) uint64 {
	if n == 0 {
		return unbounded
	}
	return (uint64(i)+1)*n/uint64(w) - uint64(i)*n/uint64(w)
}

func (w *worker) closedLoop(quota uint64) {
	p := w.pool
	for k := uint64(0); k < quota; k++ {
		if p.stop.Load() {
			return
		}
		i := p.cfg.Mix.At(w.n)
		w.n++
		t := now()
		w.backOff(w.cycle(i, t))
		yieldEvery(k)
	}
}

// yieldEvery yields the worker's P every yieldPeriod connections. A worker
// that only makes quick system calls never advances its P's scheduling
// tick, so after 10 ms sysmon takes it for a runaway goroutine: it sends a
// preemption signal and retakes the P, and the worker must find another
// on its next return from the kernel (strace of 8 workers over 2 s:
// 1,166 tgkill, 3,629 futex). A yield every few dozen connections keeps
// the tick moving for a fraction of a cycle's cost.
func yieldEvery(k uint64) {
	if k%yieldPeriod == yieldPeriod-1 {
		runtime.Gosched()
	}
}

// yieldPeriod is how many connections a worker makes between yields: well
// under 10 ms of work at any realistic cycle time.
const yieldPeriod = 16

// lateThreshold is how far behind its intended time an open-loop connection
// may start before it counts as a late start.
const lateThreshold = int64(time.Millisecond)

// openLoop starts connections on this worker's share of the schedule. Each
// of W workers runs its own arrival process at Rate/W (the superposition of
// W Poisson processes is Poisson at Rate), so workers share no state.
// Latency counts from the intended start (wrk2's rule): a worker that falls
// behind does not hide its backlog.
func (w *worker) openLoop(t0 int64, quota uint64) {
	p := w.pool
	W := float64(len(p.workers))
	gap := W / p.cfg.Rate * 1e9 // ns between this worker's arrivals
	rng := rand.New(rand.NewPCG(p.cfg.Seed, uint64(w.id)+1))
	next := float64(t0) + gap*float64(w.id)/W
	for k := uint64(0); k < quota; k++ {
		if p.cfg.Arrival == ArrivalPoisson {
			next += rng.ExpFloat64() * gap
		} else if k > 0 {
			next += gap
		}
		intended := int64(next)
		for {
			if p.stop.Load() {
				return
			}
			d := intended - now()
			if d <= 0 {
				break
			}
			time.Sleep(time.Duration(min(d, int64(50*time.Millisecond))))
		}
		i := p.cfg.Mix.At(w.n)
		w.n++
		yieldEvery(k)
		if t := now(); t-intended > lateThreshold {
			w.c[i].late.Add(1)
			if t < p.warmupEnd {
				w.warm[i].late.Add(1)
			}
		}
		w.backOff(w.cycle(i, intended))
	}
}

// Counts returns what mix entry i did after the warm-up.
func (p *Pool) Counts(i int) Counts {
	var c, warm Counts
	for _, w := range p.workers {
		c.add(&w.c[i])
		warm.add(&w.warm[i])
	}
	return c.Sub(warm)
}

// LiveCounts returns everything mix entry i did, warm-up included: the
// figures of a live view.
func (p *Pool) LiveCounts(i int) Counts {
	var c Counts
	for _, w := range p.workers {
		c.add(&w.c[i])
	}
	return c
}

// Total sums Counts over the mix.
func (p *Pool) Total() Counts { return p.sum(p.Counts) }

// LiveTotal sums LiveCounts over the mix.
func (p *Pool) LiveTotal() Counts { return p.sum(p.LiveCounts) }

func (p *Pool) sum(counts func(int) Counts) Counts {
	var t Counts
	for i := range p.cfg.Mix.Entries {
		t.Add(counts(i))
	}
	return t
}

// Example returns the first error message of class c for mix entry i.
func (p *Pool) Example(i int, c ErrorClass) string { return p.examples[i].Example(c) }

// Window returns the measured window: from the end of the warm-up to the
// stop (the deadline, ctx, a fault, or the last worker done with its
// cycles). Rates divide by it; the grace period after the stop is not in
// it (see Grace), or a target stalled at the stop would halve the rate.
func (p *Pool) Window() (start, end time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	end = p.stopAt
	if end.IsZero() {
		end = p.end
	}
	if end.Before(p.measureStart) {
		end = p.measureStart
	}
	return p.measureStart, end
}

// Grace returns how long connections in flight took to end after the
// stop: zero when none was in flight, up to Config.Grace, a little more
// when the grace period ran out and the forced stop waited for workers.
func (p *Pool) Grace() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopAt.IsZero() || p.end.Before(p.stopAt) {
		return 0
	}
	return p.end.Sub(p.stopAt)
}

// Fault returns the fault the run stopped with, or nil.
func (p *Pool) Fault() *FaultError {
	select {
	case <-p.faulted:
		return p.fault
	default:
		return nil
	}
}

// Outages returns the stretches of the run in which the target refused
// every connection, in order; the last has a zero End when the target
// still refused at the stop. They are recorded under either OnRefused
// policy (with stop, a refusal lasting the stall timeout ends the run).
func (p *Pool) Outages() []Outage {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Outage(nil), p.outages...)
}

// HoldWaits returns how often and how long workers waited for room in the
// client's holder (close-wait-leak): the descriptor bound pacing the run.
func (p *Pool) HoldWaits() HoldWaits {
	if p.clientHolder == nil {
		return HoldWaits{}
	}
	return p.clientHolder.holdWaits()
}

// Held returns how many connections the client side holds open now.
func (p *Pool) Held() int {
	if p.clientHolder == nil {
		return 0
	}
	return p.clientHolder.held()
}

// Stopped reports whether the pool was asked to stop.
func (p *Pool) Stopped() bool { return p.stop.Load() }
