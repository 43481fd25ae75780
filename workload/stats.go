package workload

import (
	"sync/atomic"
	"time"
)

// sideCounters is what one worker (client side) or one acceptor (target
// side) counted for one scenario. Each is written by its owner only; atomics
// let the sampler read them while the run goes on, without locks.
type sideCounters struct {
	attempts atomic.Uint64
	cycles   atomic.Uint64
	errors   [NumErrorClasses]atomic.Uint64
	sent     atomic.Uint64
	received atomic.Uint64
	verified atomic.Uint64
	eof      atomic.Uint64
	reset    atomic.Uint64
	lost     atomic.Uint64
	late     atomic.Uint64
	// unfinished counts connections the stop ended, by the phase they
	// were in.
	unfinished [NumStopPhases]atomic.Uint64
	_          [64]byte // keep neighbours off this cache line
}

// Counts is a snapshot of counters, summed over workers or acceptors.
type Counts struct {
	Attempts   uint64
	Cycles     uint64
	Errors     [NumErrorClasses]uint64
	Sent       uint64
	Received   uint64
	Verified   uint64
	EOF        uint64
	Reset      uint64
	Lost       uint64
	LateStarts uint64
	// Unfinished counts connections still in progress when the stop came
	// (after the grace period), by the phase they were in. Attempts =
	// Cycles + ErrorTotal() + UnfinishedTotal() once a run is over.
	Unfinished [NumStopPhases]uint64
}

// UnfinishedTotal sums the unfinished connections over their phases.
func (c *Counts) UnfinishedTotal() uint64 {
	var n uint64
	for _, u := range c.Unfinished {
		n += u
	}
	return n
}

// Accounted reports whether every attempt ended in exactly one place:
// completed, an error class or unfinished. It holds for a pool's Counts
// after Run has returned (during a run, connections in flight are missing).
func (c *Counts) Accounted() bool {
	return c.Attempts == c.Cycles+c.ErrorTotal()+c.UnfinishedTotal()
}

// ErrorTotal sums the error classes.
func (c *Counts) ErrorTotal() uint64 {
	var n uint64
	for _, e := range c.Errors {
		n += e
	}
	return n
}

func (c *Counts) add(s *sideCounters) {
	c.Attempts += s.attempts.Load()
	c.Cycles += s.cycles.Load()
	for i := range c.Errors {
		c.Errors[i] += s.errors[i].Load()
	}
	c.Sent += s.sent.Load()
	c.Received += s.received.Load()
	c.Verified += s.verified.Load()
	c.EOF += s.eof.Load()
	c.Reset += s.reset.Load()
	c.Lost += s.lost.Load()
	c.LateStarts += s.late.Load()
	for i := range c.Unfinished {
		c.Unfinished[i] += s.unfinished[i].Load()
	}
}

// Add adds o to c: sums over scenarios, workers or shards.
func (c *Counts) Add(o Counts) {
	c.Attempts += o.Attempts
	c.Cycles += o.Cycles
	for i := range c.Errors {
		c.Errors[i] += o.Errors[i]
	}
	c.Sent += o.Sent
	c.Received += o.Received
	c.Verified += o.Verified
	c.EOF += o.EOF
	c.Reset += o.Reset
	c.Lost += o.Lost
	c.LateStarts += o.LateStarts
	for i := range c.Unfinished {
		c.Unfinished[i] += o.Unfinished[i]
	}
}

// Sub returns c minus base, for figures that exclude the warm-up.
func (c Counts) Sub(base Counts) Counts {
	c.Attempts -= base.Attempts
	c.Cycles -= base.Cycles
	for i := range c.Errors {
		c.Errors[i] -= base.Errors[i]
	}
	c.Sent -= base.Sent
	c.Received -= base.Received
	c.Verified -= base.Verified
	c.EOF -= base.EOF
	c.Reset -= base.Reset
	c.Lost -= base.Lost
	c.LateStarts -= base.LateStarts
	for i := range c.Unfinished {
		c.Unfinished[i] -= base.Unfinished[i]
	}
	return c
}

// errorExamples keeps the first message of each error class, so a summary
// can show the real errno text next to the count.
type errorExamples [NumErrorClasses]atomic.Pointer[string]

func (e *errorExamples) note(c ErrorClass, err error) {
	if e[c].Load() != nil {
		return
	}
	msg := err.Error()
	e[c].CompareAndSwap(nil, &msg)
}

// Example returns the first message seen for class c, or "".
func (e *errorExamples) Example(c ErrorClass) string {
	if p := e[c].Load(); p != nil {
		return *p
	}
	return ""
}

var clockBase = time.Now()

// now is a monotonic clock in nanoseconds; the one clock for every phase.
func now() int64 { return int64(time.Since(clockBase)) }
