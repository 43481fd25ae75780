package workload

import (
	"bytes"
	"errors"
	"sync/atomic"
	"time"

	"github.com/closeload/closeload/collector"
	"golang.org/x/sys/unix"
)

// worker runs client halves one connection after another. It owns its
// counters, its latency recorder and its buffers: nothing on its path is
// shared with another worker.
type worker struct {
	id    int
	pool  *Pool
	rec   *collector.LatencyRecorder
	c     []sideCounters // per mix index, every connection
	warm  []sideCounters // per mix index, connections that ended in the warm-up
	buf   []byte
	srcs  []sockaddr
	dst   []sockaddr // per mix index
	nsrc  int
	n     uint64       // connections started, picks the mix slot
	curFD atomic.Int32 // descriptor in use, -1 when none; for the forced stop
	// deadline (now() clock, 0 when idle) and gen let the pool's watchdog
	// time out a connection without a setsockopt per connection; timedOut
	// tells the worker that the watchdog shut its connection down.
	deadline atomic.Int64
	gen      atomic.Uint64
	timedOut atomic.Bool
	// phase is what the connection in progress waits for (phaseOf a
	// StopPhase, phaseIdle between connections), one store per change;
	// stopped is set by the forced stop to the phase it found, so the
	// worker counts the connection unfinished in it.
	phase   atomic.Uint32
	stopped atomic.Uint32
	// refusedSince (now() clock) is the first refusal of the worker's
	// current run of refusals, 0 when its last connection did not end
	// refused; recoveredAt is when a completed connection last ended such
	// a run. The monitor reads both to date outages.
	refusedSince atomic.Int64
	recoveredAt  atomic.Int64
	// faultRun counts faults in a row; pause is the last backoff. The
	// worker's own, plain fields.
	faultRun int
	pause    time.Duration
	// o is the connection in progress; a field so that it is not allocated
	// per connection (it would escape through the scenario's function value).
	o outcome
}

// outcome is what one connection did, filled in by a client half.
type outcome struct {
	t        collector.Timings
	sent     uint64
	received uint64
	verified uint64
	eof      bool
	reset    bool // a reset the scenario expects
	lost     bool // the response did not arrive whole (unread-close)
	err      error
	// unfinished is phaseOf the phase a stop ended the connection in, or
	// phaseIdle when it ended by itself.
	unfinished uint32
}

// noClass is what cycle returns for a connection that ended without error.
const noClass ErrorClass = -1

// cycle makes one connection of scenario mix[i], intended to start at
// intended (now() clock; equal to the actual start in closed loop). It
// returns the connection's error class, noClass when it completed or was
// left unfinished by the stop.
func (w *worker) cycle(i int, intended int64) ErrorClass {
	p := w.pool
	c := &w.c[i]
	c.attempts.Add(1)
	warm := &w.warm[i]
	w.o = outcome{}
	o := &w.o
	start := now()
	w.gen.Add(1)
	w.deadline.Store(start + int64(p.cfg.Timeout))
	w.phase.Store(phaseOf(StopConnect))
	fd, err := w.dial(i)
	connected := now()
	if err != nil {
		o.err = err
	} else {
		o.t[collector.PhaseConnect] = connected - start
		w.phase.Store(phaseOf(StopFirstByte))
		p.client[p.cfg.Mix.Entries[i].Scenario](w, fd, o, connected)
	}
	w.curFD.Store(-1)
	w.deadline.Store(0)
	w.phase.Store(phaseIdle)
	if ph := w.stopped.Swap(phaseIdle); ph != phaseIdle {
		// Shut down by the forced stop: whatever the half saw after that
		// is not the scenario's doing; the connection is unfinished.
		o.unfinished = ph
	}
	if w.timedOut.Load() {
		// The watchdog shut the connection down: whatever the half saw
		// after that (EOF, a reset) is a timeout.
		w.timedOut.Store(false)
		if o.unfinished == phaseIdle {
			o.err, o.eof, o.reset = unix.ETIMEDOUT, false, false
		}
	}
	if o.unfinished != phaseIdle {
		o.err, o.eof, o.reset, o.lost = nil, false, false, false
	}
	end := now()
	o.t[collector.PhaseTotal] = end - intended
	cl := noClass
	if o.err != nil {
		cl = Classify(o.err)
		p.examples[i].note(cl, o.err)
	}
	// A connection that ends in the warm-up counts (live figures show it)
	// but is noted as warm-up and never recorded: measured figures are the
	// counters less the warm-up ones, exactly.
	if end < p.warmupEnd {
		w.count(warm, o, true)
		w.count(c, o, false)
		return cl
	}
	if w.count(c, o, false) {
		w.rec.Record(i, &o.t)
	}
	return cl
}

// backOff paces a worker meeting faults: after backoffAfter in a row it
// pauses, doubling from backoffMin to backoffMax, so that a loop whose
// every connect fails at once (no port, no descriptor, a target resetting
// or refusing everything) does not spin; a completed connection ends the
// run of faults. It also dates the worker's runs of refusals for outages.
func (w *worker) backOff(cl ErrorClass) {
	if cl == noClass {
		if w.faultRun > 0 {
			w.faultRun, w.pause = 0, 0
			if w.refusedSince.Load() != 0 {
				w.recoveredAt.Store(now())
				w.refusedSince.Store(0)
			}
		}
		return
	}
	if !isFault(cl) {
		return
	}
	if cl == ErrRefused && w.refusedSince.Load() == 0 {
		w.refusedSince.Store(now())
	}
	w.faultRun++
	if w.pause = nextBackoff(w.faultRun, w.pause); w.pause > 0 && !w.pool.stop.Load() {
		time.Sleep(w.pause)
	}
}

// count adds one connection's outcome to c; it returns whether the
// connection succeeded.
func (w *worker) count(c *sideCounters, o *outcome, warm bool) bool {
	if warm {
		c.attempts.Add(1)
	}
	if o.unfinished != phaseIdle {
		c.unfinished[o.unfinished-1].Add(1)
		return false
	}
	if o.sent > 0 {
		c.sent.Add(o.sent)
	}
	if o.received > 0 {
		c.received.Add(o.received)
	}
	if o.verified > 0 {
		c.verified.Add(o.verified)
	}
	if o.eof {
		c.eof.Add(1)
	}
	if o.reset {
		c.reset.Add(1)
	}
	if o.lost {
		c.lost.Add(1)
	}
	if o.err != nil {
		c.errors[Classify(o.err)].Add(1)
		return false
	}
	c.cycles.Add(1)
	return true
}

// dial opens, binds (spreading sources) and connects a socket.
func (w *worker) dial(i int) (int, error) {
	dst := &w.dst[i]
	fd, err := rawSocket(dst.family)
	if err != nil {
		return -1, err
	}
	w.curFD.Store(int32(fd))
	if w.nsrc > 0 {
		src := &w.srcs[w.n%uint64(w.nsrc)]
		if err := rawBindNoPort(fd, src); err != nil {
			rawClose(fd)
			return -1, err
		}
	}
	if err := sysConnect(fd, dst, w.pool.cfg.Timeout); err != nil {
		rawClose(fd)
		return -1, err
	}
	return fd, nil
}

// readToEOF reads until the peer's FIN, noting the first byte's time.
func (w *worker) readToEOF(fd int, o *outcome, connected int64) error {
	for {
		n, err := sysRead(fd, w.buf)
		if err != nil {
			return err
		}
		if n == 0 {
			o.eof = true
			return nil
		}
		if o.received == 0 {
			o.t[collector.PhaseFirstByte] = now() - connected
			w.phase.Store(phaseOf(StopDrain))
		}
		o.received += uint64(n)
	}
}

// readN reads want bytes, or up to EOF if the peer closes first; want 0
// reads to EOF (an external server's response of unknown length).
func (w *worker) readN(fd int, want int, o *outcome, connected int64) error {
	if want <= 0 {
		return w.readToEOF(fd, o, connected)
	}
	for int(o.received) < want {
		n, err := sysRead(fd, w.buf[:min(len(w.buf), want-int(o.received))])
		if err != nil {
			return err
		}
		if n == 0 {
			o.eof = true
			if o.received == 0 {
				return ErrShortRead
			}
			return nil
		}
		if o.received == 0 {
			o.t[collector.PhaseFirstByte] = now() - connected
		}
		o.received += uint64(n)
	}
	return nil
}

func (w *worker) send(fd int, o *outcome) error {
	n, err := sendAll(fd, w.pool.request)
	o.sent += uint64(n)
	return err
}

type clientHalf func(w *worker, fd int, o *outcome, connected int64)

var clientHalves = [numScenarios]clientHalf{
	ClientHalfClose: clientHalfCloseClient,
	ServerHalfClose: serverHalfCloseClient,
	Simultaneous:    clientHalfCloseClient,
	FullClose:       fullCloseClient,
	Linger0:         linger0Client,
	UnreadClose:     unreadCloseClient,
	OrphanFinWait2:  orphanFinWait2Client,
	CloseWaitLeak:   closeWaitLeakClient,
	StreamEcho:      streamEchoClient,
}

// write request; CloseWrite; read to EOF; Close.
func clientHalfCloseClient(w *worker, fd int, o *outcome, connected int64) {
	defer rawClose(fd)
	if o.err = w.send(fd, o); o.err != nil {
		return
	}
	if o.err = rawShutdown(fd, unix.SHUT_WR); o.err != nil {
		return
	}
	w.phase.Store(phaseOf(StopDrain))
	fin := now()
	if o.err = w.readToEOF(fd, o, connected); o.err == nil {
		o.t[collector.PhaseDrain] = now() - fin
	}
}

// read to EOF; write trailer; Close.
func serverHalfCloseClient(w *worker, fd int, o *outcome, connected int64) {
	defer rawClose(fd)
	if o.err = w.readToEOF(fd, o, connected); o.err != nil {
		return
	}
	o.err = w.send(fd, o)
}

// write; read response; Close.
func fullCloseClient(w *worker, fd int, o *outcome, connected int64) {
	defer rawClose(fd)
	if o.err = w.send(fd, o); o.err != nil {
		return
	}
	o.err = w.readN(fd, w.pool.cfg.ResponseSize, o, connected)
}

// write; read response; SO_LINGER {1, 0}; Close: an RST instead of a FIN.
func linger0Client(w *worker, fd int, o *outcome, connected int64) {
	defer rawClose(fd)
	if o.err = w.send(fd, o); o.err != nil {
		return
	}
	if o.err = w.readN(fd, w.pool.cfg.ResponseSize, o, connected); o.err != nil {
		return
	}
	o.err = rawLinger0(fd)
}

// write more than the target reads; read the response. The target closes
// with unread data, which sends an RST: the response may or may not arrive
// first. A reset is this scenario's normal ending, not an error.
func unreadCloseClient(w *worker, fd int, o *outcome, connected int64) {
	defer rawClose(fd)
	err := w.send(fd, o)
	if err == nil {
		err = w.readToEOF(fd, o, connected)
	}
	if errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ENOTCONN) {
		o.reset = true
		err = nil
	}
	o.err = err
	switch {
	case o.err != nil:
	case w.pool.cfg.ResponseSize > 0:
		o.lost = int(o.received) < w.pool.cfg.ResponseSize
	default:
		// A response of unknown length (an external target) arrived
		// whole only if its EOF did: a reset first cut it short.
		o.lost = !o.eof
	}
}

// CloseWrite; Close at once: the socket is orphaned in FIN_WAIT_2 until the
// target closes or tcp_fin_timeout reaps it.
func orphanFinWait2Client(w *worker, fd int, o *outcome, connected int64) {
	if o.err = rawShutdown(fd, unix.SHUT_WR); o.err != nil {
		rawClose(fd)
		return
	}
	rawClose(fd)
}

// CloseWrite; keep the connection (with its descriptor) for --hold; Close.
// The holder keeps it, so the worker goes on: connections pile up.
func closeWaitLeakClient(w *worker, fd int, o *outcome, connected int64) {
	if o.err = rawShutdown(fd, unix.SHUT_WR); o.err != nil {
		rawClose(fd)
		return
	}
	w.curFD.Store(-1)
	w.phase.Store(phaseOf(StopHeld))
	if !w.pool.clientHolder.add(heldConn{fd: fd, deadline: now() + int64(w.pool.cfg.Hold)}) {
		// The run stopped while the holder was full: never held.
		o.unfinished = phaseOf(StopHeld)
	}
}

// stream --request-size bytes while reading the echo; CloseWrite; read to
// EOF; check every byte against what was sent. One thread does both
// directions with poll(), so no goroutine is needed per connection.
func streamEchoClient(w *worker, fd int, o *outcome, connected int64) {
	defer rawClose(fd)
	total := w.pool.cfg.RequestSize
	pat := w.pool.pattern
	var fin int64
	shut := false
	for {
		if !shut && int(o.sent) >= total {
			if o.err = rawShutdown(fd, unix.SHUT_WR); o.err != nil {
				return
			}
			w.phase.Store(phaseOf(StopDrain))
			fin, shut = now(), true
		}
		ev := int16(unix.POLLIN)
		if !shut {
			ev |= unix.POLLOUT
		}
		rev, err := pollFd(fd, ev, w.pool.cfg.Timeout)
		if err != nil {
			o.err = err
			return
		}
		if rev&(unix.POLLIN|unix.POLLHUP|unix.POLLERR) != 0 {
			n, ok, err := recvSome(fd, w.buf)
			if err != nil {
				o.err = err
				return
			}
			if ok && n == 0 {
				o.eof = true
				if fin > 0 {
					o.t[collector.PhaseDrain] = now() - fin
				}
				if o.received != uint64(total) {
					o.err = ErrShortRead
				}
				return
			}
			if n > 0 {
				if o.received == 0 {
					o.t[collector.PhaseFirstByte] = now() - connected
				}
				off := int(o.received % patternPeriod)
				if !bytes.Equal(w.buf[:n], pat[off:off+n]) {
					o.err = ErrMismatch
					return
				}
				o.received += uint64(n)
				o.verified += uint64(n)
			}
		}
		if !shut && rev&unix.POLLOUT != 0 {
			off := int(o.sent % patternPeriod)
			n, err := sendSome(fd, pat[off:off+min(total-int(o.sent), streamChunk)])
			if err != nil {
				o.err = err
				return
			}
			o.sent += uint64(n)
		}
	}
}

// patternPeriod is the period of stream-echo's byte pattern: a prime, so the
// pattern never lines up with buffer sizes and a dropped or repeated chunk
// shows as a mismatch.
const patternPeriod = 251

// streamChunk is the most stream-echo sends in one call, and so the most a
// worker's read buffer must hold.
const streamChunk = 32 << 10

// readBuffer is the size of a worker's read buffer.
const readBuffer = 64 << 10

// makePattern returns the stream-echo pattern, long enough to slice any
// chunk sent or read at any offset from it.
func makePattern() []byte {
	p := make([]byte, max(streamChunk, readBuffer)+patternPeriod)
	for i := range p {
		p[i] = byte(i % patternPeriod)
	}
	return p
}
