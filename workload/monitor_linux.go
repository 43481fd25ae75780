package workload

import (
	"time"
)

// monitorTick is how often the pool's monitor looks at the live counters:
// the resolution of a fault stop and of outage windows' detection (their
// ends come from the workers' own clocks).
const monitorTick = 50 * time.Millisecond

// monitor watches the live counters while the workers run. It stops the
// run with a FaultError when no connection has completed for the stall
// timeout while faults went on, and it records outage windows: stretches
// in which connections were refused and none completed.
func (p *Pool) monitor(done <-chan struct{}) {
	tick := time.NewTicker(monitorTick)
	defer tick.Stop()
	var (
		last       Counts  // at the previous tick
		progressAt = now() // last tick at which a connection completed
		faultBase  Counts  // counters at progressAt
		faultAt    int64   // last tick at which a fault was counted
		outage     *Outage // the open outage, if any
		refusedAt0 uint64  // refusals before the open outage
		outageFrom int64   // now() start of the open outage
		stopped    = false
	)
	for {
		select {
		case <-done:
			if outage != nil {
				outage.Refused = p.LiveTotal().Errors[ErrRefused] - refusedAt0
				p.mu.Lock()
				p.outages = append(p.outages, *outage)
				p.mu.Unlock()
			}
			return
		case <-tick.C:
		}
		t := now()
		c := p.LiveTotal()
		completed := c.Cycles > last.Cycles
		refused := c.Errors[ErrRefused] > last.Errors[ErrRefused]

		// Outages: refusals with nothing completed open one; the first
		// completion closes it.
		switch {
		case outage == nil && refused && !completed:
			outageFrom = p.earliest(func(w *worker) int64 { return w.refusedSince.Load() }, 0, t)
			outage = &Outage{Start: monoTime(outageFrom)}
			refusedAt0 = last.Errors[ErrRefused]
		case outage != nil && completed:
			end := p.earliest(func(w *worker) int64 { return w.recoveredAt.Load() }, outageFrom, t)
			outage.End = monoTime(end)
			outage.Refused = c.Errors[ErrRefused] - refusedAt0
			p.mu.Lock()
			p.outages = append(p.outages, *outage)
			p.mu.Unlock()
			outage = nil
		}

		// Fault stop.
		if completed {
			progressAt, faultBase = t, c
		}
		if p.faultsSince(&last, &c) > 0 {
			faultAt = t
		}
		last = c
		// Once stopped (by the deadline, ctx or a fault), the grace
		// period's silence is no fault.
		if stopped || p.cfg.StallTimeout < 0 || completed || p.stop.Load() {
			continue
		}
		stall := time.Duration(t - progressAt)
		if stall < p.cfg.StallTimeout || t-faultAt > int64(p.cfg.StallTimeout/2) {
			continue
		}
		cl, n := p.worstFault(&faultBase, &c)
		if n == 0 {
			continue
		}
		p.fault = &FaultError{Class: cl, Count: n, Stalled: stall, Example: p.example(cl)}
		stopped = true
		p.stop.Store(true)
		close(p.faulted)
	}
}

// faultsSince counts faults between two snapshots, refusals left out when
// the run rides them out.
func (p *Pool) faultsSince(from, to *Counts) uint64 {
	var n uint64
	for cl := range NumErrorClasses {
		if p.stopsOn(ErrorClass(cl)) {
			n += to.Errors[cl] - from.Errors[cl]
		}
	}
	return n
}

// worstFault returns the fault class counted most often between two
// snapshots, and its count.
func (p *Pool) worstFault(from, to *Counts) (ErrorClass, uint64) {
	var best ErrorClass
	var most uint64
	for cl := range NumErrorClasses {
		if d := to.Errors[cl] - from.Errors[cl]; p.stopsOn(ErrorClass(cl)) && d > most {
			best, most = ErrorClass(cl), d
		}
	}
	return best, most
}

// stopsOn reports whether a run of class cl with nothing completed stops
// the run.
func (p *Pool) stopsOn(cl ErrorClass) bool {
	return isFault(cl) && !(cl == ErrRefused && p.cfg.OnRefused == RefusedContinue)
}

// example returns the first message of class cl in any mix entry.
func (p *Pool) example(cl ErrorClass) string {
	for i := range p.examples {
		if m := p.examples[i].Example(cl); m != "" {
			return m
		}
	}
	return ""
}

// earliest returns the smallest stamp of the workers after from, or
// fallback when none is.
func (p *Pool) earliest(stamp func(*worker) int64, from, fallback int64) int64 {
	best := int64(0)
	for _, w := range p.workers {
		if v := stamp(w); v > from && (best == 0 || v < best) {
			best = v
		}
	}
	if best == 0 {
		return fallback
	}
	return best
}
