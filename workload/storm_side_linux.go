package workload

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/closeload/closeload/collector"
	"golang.org/x/sys/unix"
)

// A storm holds up to hundreds of thousands of connections at once, so
// nothing in it costs a goroutine, a net.Conn or a heap object per
// connection. A connection is 32 bytes in a chunked table; a few reapers
// per side wait for readiness with epoll and each owns the connections
// whose index is its own modulo the reaper count: the reaper reads, sends
// the storm's FIN on schedule, and closes, so no two goroutines ever act on
// one descriptor. Connections that leak CLOSE_WAIT are handed to a holder,
// which closes them when their leak ends.

// ErrInterrupted is what ends storm connections still open when a stop
// (Ctrl-C, a failed sibling) ended the storm; they are counted unfinished
// in the phase they were in, not as errors.
var ErrInterrupted = errors.New("storm interrupted before the connection ended")

// ErrStormTimeout is the error of storm connections that had not ended by
// the storm's deadline (close window, leak and --timeout).
var ErrStormTimeout = errors.New("connection not gone by the storm deadline: " + unix.ETIMEDOUT.Error())

// sconn is one storm connection: its descriptor, state bits and the times
// the phases need.
type sconn struct {
	fd    atomic.Int32
	state atomic.Uint32
	start atomic.Int64 // now() clock: intended dial start (client), accept (target)
	fin   atomic.Int64 // own FIN sent
	eof   atomic.Int64 // peer's EOF read
}

// Bits of sconn.state.
const (
	stOpen uint32 = 1 << iota // published: descriptor valid, owned by its reaper
	stFIN                     // own FIN sent
	stEOF                     // peer's EOF read
	stLeak                    // handed to the holder, which closes it
	stDone                    // closed and counted (or never opened)
)

// connTable is an append-only array of connections in chunks: indexes are
// stable, a lookup is two loads, and growing never moves a connection that
// another goroutine is reading.
type connTable struct {
	mu     sync.Mutex
	chunks [tableChunks]atomic.Pointer[[chunkSize]sconn]
}

const (
	chunkSize   = 1024
	tableChunks = 1 << 14 // 16M connections per side and process
)

// maxTableConns is the most connections a table holds.
const maxTableConns = chunkSize * tableChunks

// at returns connection i; its chunk must exist.
func (t *connTable) at(i int) *sconn {
	return &t.chunks[i/chunkSize].Load()[i%chunkSize]
}

// ensure makes the chunk of connection i exist.
func (t *connTable) ensure(i int) *sconn {
	c := t.chunks[i/chunkSize].Load()
	if c == nil {
		t.mu.Lock()
		if c = t.chunks[i/chunkSize].Load(); c == nil {
			c = new([chunkSize]sconn)
			t.chunks[i/chunkSize].Store(c)
		}
		t.mu.Unlock()
	}
	return &c[i%chunkSize]
}

// sideCounts are the counters of one side of a storm, read live by the
// sampler and at the end by the record.
type sideCounts struct {
	attempts atomic.Uint64 // client: dials started; target: accepts
	opened   atomic.Uint64
	closed   atomic.Uint64 // ended in the peer's EOF
	failed   atomic.Uint64 // opened, ended in a classified error
	errors   [NumErrorClasses]atomic.Uint64
	received atomic.Uint64
	sent     atomic.Uint64
	reset    atomic.Uint64
	late     atomic.Uint64
	// unfinished counts connections a stop ended, by phase.
	unfinished [NumStopPhases]atomic.Uint64
	held       atomic.Int64
	peak       atomic.Int64
	lastGone   atomic.Int64 // now() clock of the last close
}

// StormSideCounts is a snapshot of one side's counters.
type StormSideCounts struct {
	// Attempts counts dials (client) or accepts (target); Opened those that
	// gave a connection. Every opened connection ends Closed (the peer's
	// EOF was read), Failed (a classified error) or Unfinished (a stop
	// ended it: held before its FIN, or in drain after it); Unaccounted is
	// the rest and must be zero once the storm is over. So Attempts =
	// Closed + ErrorTotal() + UnfinishedTotal().
	Attempts, Opened, Closed, Failed, Unaccounted uint64
	Unfinished                                    [NumStopPhases]uint64
	// Errors counts dial and connection errors by class.
	Errors [NumErrorClasses]uint64
	// Received and Sent are payload bytes; Reset counts connections that
	// ended in an RST; LateStarts dials that began over 1 ms after their
	// paced time (--rate).
	Received, Sent, Reset, LateStarts uint64
	// Held is how many connections are open now, HoldPeak the most at once.
	Held, HoldPeak uint64
	// LastGone is when the last connection was closed (zero if none).
	LastGone time.Time
}

// ErrorTotal sums the error classes.
func (c *StormSideCounts) ErrorTotal() uint64 {
	var n uint64
	for _, e := range c.Errors {
		n += e
	}
	return n
}

// UnfinishedTotal sums the unfinished connections over their phases.
func (c *StormSideCounts) UnfinishedTotal() uint64 {
	var n uint64
	for _, u := range c.Unfinished {
		n += u
	}
	return n
}

// side is one end of every connection of a storm in this process: the
// client's or the built-in target's.
type side struct {
	client  bool
	table   connTable
	n       atomic.Int64 // indexes handed out (target) or planned (client)
	epfd    []int
	live    []atomic.Int64 // per reaper: published and not yet done or leaked
	c       sideCounts
	ex      errorExamples
	sink    *collector.LatencySink
	holder  *holder
	holdRec *collector.LatencyRecorder // the holder goroutine's

	closes  bool          // sends its FIN at the storm time
	drain   bool          // records the drain phase
	leak    time.Duration // passive side keeps CLOSE_WAIT this long
	leaks   bool
	respond []byte // passive side writes this after the peer's EOF

	closeAt  atomic.Int64 // now() clock; 0 until the close time is known
	closeN   atomic.Int64 // connections the close window is spread over
	window   int64
	deadline atomic.Int64 // now() clock; connections not gone by then time out
	stop     atomic.Bool
	// done is set when no further connection will be published (client:
	// dialing over); reapers of a client end once theirs are gone.
	done atomic.Bool
	wg   sync.WaitGroup
}

// reapersFor is how many reapers a side runs: n when given, else two.
func reapersFor(n int) int {
	if n > 0 {
		return n
	}
	return 2
}

func newSide(client bool, reapers int, sink *collector.LatencySink) (*side, error) {
	s := &side{client: client, sink: sink}
	s.live = make([]atomic.Int64, reapers)
	for range reapers {
		fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			s.closeEpoll()
			return nil, err
		}
		s.epfd = append(s.epfd, fd)
	}
	return s, nil
}

func (s *side) closeEpoll() {
	for _, fd := range s.epfd {
		rawClose(fd)
	}
	s.epfd = nil
}

// startHolder starts the holder of leaking connections, when the side
// leaks.
func (s *side) startHolder() {
	if !s.leaks {
		return
	}
	s.holdRec = s.sink.NewRecorder()
	s.holder = newHolder(maxTableConns, s.onLeakClosed)
}

// startReapers starts one goroutine per epoll instance.
func (s *side) startReapers() {
	for r := range s.epfd {
		s.wg.Add(1)
		go s.reap(r)
	}
}

// publish makes connection i (descriptor fd, started at start) owned by its
// reaper. The caller counted the attempt.
func (s *side) publish(i int, fd int, start int64) error {
	c := s.table.ensure(i)
	r := i % len(s.epfd)
	c.fd.Store(int32(fd))
	c.start.Store(start)
	s.c.opened.Add(1)
	// Into epoll before the state says open: until then the reaper (its FIN
	// schedule, readiness, a sweep) leaves the connection alone, so a
	// failure here is undone by this goroutine only. An event that comes
	// first is reported again (level-triggered).
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(i)}
	if err := unix.EpollCtl(s.epfd[r], unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		rawClose(fd)
		c.state.Store(stDone)
		s.count(err)
		s.c.failed.Add(1)
		return err
	}
	s.live[r].Add(1)
	h := s.c.held.Add(1)
	for p := s.c.peak.Load(); h > p && !s.c.peak.CompareAndSwap(p, h); p = s.c.peak.Load() {
	}
	c.state.Store(stOpen)
	return nil
}

// skip marks connection i as never opened (its dial failed or never ran).
func (s *side) skip(i int) {
	s.table.ensure(i).state.Store(stDone)
}

// count notes a classified error.
func (s *side) count(err error) {
	cl := Classify(err)
	s.c.errors[cl].Add(1)
	s.ex.note(cl, err)
	if cl == ErrReset {
		s.c.reset.Add(1)
	}
}

// indexes is how many connection indexes are in use: a target hands out
// one per accept, and those past the table's end were refused.
func (s *side) indexes() int { return int(min(s.n.Load(), maxTableConns)) }

// finDue is when connection i of n sends its FIN in a window starting at
// at: at + window·i/n, computed without overflowing window·i.
func finDue(at, window int64, i, n int64) int64 {
	if i >= n {
		return at + window
	}
	return at + window/n*i + window%n*i/n
}

// scheduleClose spreads the side's FINs over [at, at+window], over the n
// connections it has now (later ones go at the end of the window).
func (s *side) scheduleClose(at, deadline int64) {
	s.deadline.Store(deadline)
	s.closeN.Store(max(1, s.n.Load()))
	s.closeAt.Store(at)
}

// reapBatch bounds the FINs a reaper sends before it looks at readiness
// again, so that EOFs are read (and drains timed) while a storm at once is
// still being sent.
const reapBatch = 256

// reap runs reaper r: FINs on schedule, readiness, EOFs, errors, timeouts.
func (s *side) reap(r int) {
	defer s.wg.Done()
	evs := make([]unix.EpollEvent, 256)
	buf := make([]byte, 16<<10)
	rec := s.sink.NewRecorder()
	defer rec.Flush()
	next := r // the next of this reaper's connections to send a FIN on
	R := len(s.epfd)
	swept := false
	for {
		if s.stop.Load() {
			s.sweep(r, ErrInterrupted, rec)
			return
		}
		t := now()
		if dl := s.deadline.Load(); dl != 0 && t >= dl && !swept {
			s.sweep(r, ErrStormTimeout, rec)
			if s.client {
				return
			}
			// A target keeps serving until it is closed; what it
			// accepts later is swept when it stops.
			swept = true
		}
		if s.client && s.done.Load() && s.live[r].Load() == 0 {
			return
		}
		wait := int64(50 * time.Millisecond)
		if at := s.closeAt.Load(); s.closes && at != 0 {
			n := s.closeN.Load()
			for sent := 0; ; sent++ {
				if next >= s.indexes() {
					break
				}
				if due := finDue(at, s.window, int64(next), n); due > t {
					wait = min(wait, due-t)
					break
				}
				if sent == reapBatch {
					wait = 0
					break
				}
				c := s.table.ensure(next)
				st := c.state.Load()
				if st&stOpen == 0 && st&stDone == 0 {
					// Accepted but not yet published: look again soon.
					wait = min(wait, int64(time.Millisecond))
					break
				}
				s.sendFIN(r, next, c, rec)
				next += R
			}
		}
		ms := int((wait + int64(time.Millisecond) - 1) / int64(time.Millisecond))
		n, err := unix.EpollWait(s.epfd[r], evs, ms)
		if err != nil && err != unix.EINTR {
			s.sweep(r, err, rec)
			return
		}
		for _, ev := range evs[:max(n, 0)] {
			s.readable(r, int(ev.Fd), buf, rec)
		}
	}
}

// sendFIN half-closes connection i on the storm's schedule.
func (s *side) sendFIN(r, i int, c *sconn, rec *collector.LatencyRecorder) {
	st := c.state.Load()
	if st&(stDone|stLeak|stFIN) != 0 || st&stOpen == 0 {
		return
	}
	if err := rawShutdown(int(c.fd.Load()), unix.SHUT_WR); err != nil {
		s.fail(r, c, err)
		return
	}
	c.fin.Store(now())
	if c.state.Or(stFIN)&stEOF != 0 {
		s.finish(r, c, rec)
	}
}

// readable drains what connection i has to read: data, the peer's EOF or an
// error. A level-triggered epoll reports it again if more is left.
func (s *side) readable(r, i int, buf []byte, rec *collector.LatencyRecorder) {
	c := s.table.at(i)
	st := c.state.Load()
	if st&(stDone|stLeak|stEOF) != 0 || st&stOpen == 0 {
		return
	}
	fd := int(c.fd.Load())
	for range 8 {
		n, ok, err := recvSome(fd, buf)
		if err != nil {
			s.fail(r, c, err)
			return
		}
		if !ok {
			return
		}
		if n > 0 {
			s.c.received.Add(uint64(n))
			continue
		}
		s.onEOF(r, i, c, rec)
		return
	}
}

func (s *side) onEOF(r, i int, c *sconn, rec *collector.LatencyRecorder) {
	c.eof.Store(now())
	old := c.state.Or(stEOF)
	switch {
	case old&stFIN != 0:
		s.finish(r, c, rec)
	case s.closes:
		// Our FIN is still to come, on schedule; it finishes the
		// connection. Out of epoll until then: the pending EOF would
		// wake this reaper on every wait.
		_ = unix.EpollCtl(s.epfd[r], unix.EPOLL_CTL_DEL, int(c.fd.Load()), nil)
	case s.leaks:
		// CLOSE_WAIT for the leak: the holder closes it. Out of epoll
		// first, or the pending EOF would wake this reaper forever.
		fd := int(c.fd.Load())
		_ = unix.EpollCtl(s.epfd[r], unix.EPOLL_CTL_DEL, fd, nil)
		c.state.Or(stLeak)
		s.live[r].Add(-1)
		s.holder.add(heldConn{fd: fd, deadline: now() + int64(s.leak), tag: i})
	default:
		if len(s.respond) > 0 {
			m, err := sendSome(int(c.fd.Load()), s.respond)
			s.c.sent.Add(uint64(m))
			if err != nil {
				s.fail(r, c, err)
				return
			}
		}
		s.finish(r, c, rec)
	}
}

// finish closes a connection that ended in the peer's EOF and records it.
func (s *side) finish(r int, c *sconn, rec *collector.LatencyRecorder) {
	rawClose(int(c.fd.Load()))
	gone := now()
	c.state.Or(stDone)
	s.live[r].Add(-1)
	s.gone(c, gone, rec)
}

// gone counts a connection closed at t after the peer's EOF.
func (s *side) gone(c *sconn, t int64, rec *collector.LatencyRecorder) {
	s.c.held.Add(-1)
	s.c.closed.Add(1)
	s.noteGone(t)
	var tm collector.Timings
	if fin := c.fin.Load(); s.drain && fin != 0 {
		// Zero when the peer's FIN came first (closer both): the EOF was
		// already waiting when ours went out. 1 ns is the histogram floor.
		tm[collector.PhaseDrain] = max(c.eof.Load()-fin, 1)
	}
	if s.client {
		tm[collector.PhaseTotal] = t - c.start.Load()
	}
	if tm[collector.PhaseDrain] > 0 || tm[collector.PhaseTotal] > 0 {
		rec.Record(0, &tm)
	}
}

func (s *side) noteGone(t int64) {
	for g := s.c.lastGone.Load(); t > g && !s.c.lastGone.CompareAndSwap(g, t); g = s.c.lastGone.Load() {
	}
}

// onLeakClosed runs on the holder's goroutine when a leak ends.
func (s *side) onLeakClosed(h heldConn) {
	c := s.table.at(h.tag)
	c.state.Or(stDone)
	s.gone(c, now(), s.holdRec)
}

// fail closes a connection that ended in an error and counts it.
func (s *side) fail(r int, c *sconn, err error) {
	rawClose(int(c.fd.Load()))
	t := now()
	c.state.Or(stDone)
	s.live[r].Add(-1)
	s.c.held.Add(-1)
	s.c.failed.Add(1)
	s.count(err)
	s.noteGone(t)
}

// sweep ends every connection of reaper r still open with err.
func (s *side) sweep(r int, err error, rec *collector.LatencyRecorder) {
	R := len(s.epfd)
	n := s.indexes()
	for i := r; i < n; i += R {
		if s.table.chunks[i/chunkSize].Load() == nil {
			continue
		}
		c := s.table.at(i)
		st := c.state.Load()
		if st&stOpen == 0 || st&(stDone|stLeak) != 0 {
			continue
		}
		if st&stEOF != 0 && st&stFIN != 0 {
			s.finish(r, c, rec)
			continue
		}
		if err == ErrInterrupted {
			ph := StopHeld
			if st&stFIN != 0 {
				ph = StopDrain
			}
			s.unfinish(r, c, ph)
			continue
		}
		s.fail(r, c, err)
	}
}

// unfinish closes a connection a stop ended in phase ph and counts it.
func (s *side) unfinish(r int, c *sconn, ph StopPhase) {
	rawClose(int(c.fd.Load()))
	c.state.Or(stDone)
	s.live[r].Add(-1)
	s.c.held.Add(-1)
	s.c.unfinished[ph].Add(1)
}

// stopAll ends the side: reapers sweep what is left with ErrInterrupted,
// the holder closes what it keeps.
func (s *side) stopAll() {
	s.stop.Store(true)
	s.wg.Wait()
	if s.holder != nil {
		s.holder.stop()
		s.holdRec.Flush()
	}
	s.closeEpoll()
}

// snapshot returns the side's counters.
func (s *side) snapshot() StormSideCounts {
	c := &s.c
	out := StormSideCounts{
		Attempts: c.attempts.Load(), Opened: c.opened.Load(), Closed: c.closed.Load(), Failed: c.failed.Load(),
		Received: c.received.Load(), Sent: c.sent.Load(), Reset: c.reset.Load(), LateStarts: c.late.Load(),
		Held: uint64(max(c.held.Load(), 0)), HoldPeak: uint64(max(c.peak.Load(), 0)),
	}
	for i := range out.Errors {
		out.Errors[i] = c.errors[i].Load()
	}
	for i := range out.Unfinished {
		out.Unfinished[i] = c.unfinished[i].Load()
	}
	if ended := out.Closed + out.Failed + out.UnfinishedTotal(); out.Opened > ended {
		out.Unaccounted = out.Opened - ended
	}
	if g := c.lastGone.Load(); g != 0 {
		out.LastGone = monoTime(g)
	}
	return out
}

// monoTime converts a now() reading to wall-clock time.
func monoTime(m int64) time.Time { return clockBase.Add(time.Duration(m)) }

// monoOf converts a wall-clock time to the now() clock.
func monoOf(t time.Time) int64 { return int64(t.Sub(clockBase)) }
