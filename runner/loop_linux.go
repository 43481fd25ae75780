package runner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/results"
	"github.com/closeload/closeload/workload"
)

// loopEngine is a pool of workers, in a closed or an open loop, against the
// built-in target or an external one.
type loopEngine struct {
	p       *Plan
	out     Output
	target  *workload.Target
	targets []netip.AddrPort // per mix entry
	sink    *collector.LatencySink
	pool    *workload.Pool
	hl      *hlogRecorder
	last    uint64 // cycles at the previous live line
	closed  sync.Once
}

func (e *loopEngine) start(ctx context.Context) error {
	p := e.p
	e.targets = make([]netip.AddrPort, len(p.Mix.Entries))
	if p.Builtin() {
		scen := make([]workload.Scenario, len(p.Mix.Entries))
		for i, m := range p.Mix.Entries {
			scen[i] = m.Scenario
		}
		acc := p.Acceptors
		if acc <= 0 {
			acc = min(max(p.Conns, 2), 256)
		}
		t, err := workload.StartTarget(workload.TargetConfig{
			Listen: p.Listen, Scenarios: scen, Acceptors: acc,
			RequestSize: p.RequestSize, ResponseSize: p.ResponseSize,
			Hold: p.Hold, Timeout: p.Timeout, ReusePort: p.ReusePort,
		})
		if err != nil {
			return err
		}
		e.target = t
		copy(e.targets, t.Addrs())
	} else {
		for i := range e.targets {
			e.targets[i] = p.Target
		}
	}
	e.sink = collector.NewLatencySink(len(p.Mix.Entries))
	pool, err := workload.NewPool(workload.Config{
		Mix: p.Mix, Targets: e.targets, Sources: p.Sources, Conns: p.Conns,
		Rate: p.Rate, Arrival: p.Arrival, Duration: p.Duration, Cycles: p.Cycles,
		Warmup: p.Warmup, RequestSize: p.RequestSize, ResponseSize: p.ResponseSize,
		Request: p.Request, Hold: p.Hold, Timeout: p.Timeout, Grace: p.Grace,
		StallTimeout: p.StallTimeout, OnRefused: p.OnRefused,
	}, e.sink)
	if err != nil {
		return err
	}
	e.pool = pool
	e.hl = newHlogRecorder(e.sink, p.Mix, p.Interval, p.Hlog != "")
	return nil
}

func (e *loopEngine) ports() []uint16 {
	ports := make([]uint16, 0, len(e.targets))
	for _, t := range e.targets {
		ports = append(ports, t.Port())
	}
	return ports
}

func (e *loopEngine) samplerCPU() float64 { return 0 }

func (e *loopEngine) probe() error { return probe(e.targets[0], e.p.Timeout) }

func (e *loopEngine) run(ctx context.Context, abort <-chan struct{}) error {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var bg sync.WaitGroup
	if abort != nil {
		bg.Add(1)
		go func() {
			defer bg.Done()
			select {
			case <-abort:
				e.pool.Abort()
			case <-runCtx.Done():
			}
		}()
	}
	e.hl.start(runCtx)
	err := e.pool.Run(runCtx)
	cancel()
	bg.Wait()
	e.hl.stop()
	if errors.Is(err, context.Canceled) {
		return nil // the stop the pipeline asked for; it knows why
	}
	return err // a fault that stopped the run, with its reason
}

func (e *loopEngine) held() uint64 {
	h := e.pool.Held()
	if e.target != nil {
		h += e.target.Held()
	}
	return uint64(h)
}

func (e *loopEngine) live() collector.WorkloadCounts {
	t := e.pool.LiveTotal()
	return collector.WorkloadCounts{Cycles: t.Cycles, Errors: t.ErrorTotal(), Attempts: t.Attempts, Held: e.held()}
}

func (e *loopEngine) line(el time.Duration) string {
	c := e.pool.LiveTotal()
	defer func() { e.last = c.Cycles }()
	return fmt.Sprintf("%5.1fs/%v  cycles %d  %d/s  errors %d  held %d", el.Seconds(), e.p.Warmup+e.p.Duration, c.Cycles, c.Cycles-e.last, c.ErrorTotal(), e.held())
}

func (e *loopEngine) close() {
	e.closed.Do(func() {
		if e.target != nil {
			e.target.Close()
		}
	})
}

func (e *loopEngine) writeHlog(path string, base time.Time) error { return e.hl.write(path, base) }

// fill turns the pool's counters, the target's counters and the merged
// histograms into the record's per-scenario results and totals.
func (e *loopEngine) fill(rec *results.Run) error {
	pool, target := e.pool, e.target
	start, end := pool.Window()
	secs := end.Sub(start).Seconds()
	rec.MeasuredSeconds = secs
	rec.GraceSeconds = pool.Grace().Seconds()
	for _, o := range pool.Outages() {
		rec.Outages = append(rec.Outages, results.Outage{Start: o.Start, End: o.End, Refused: o.Refused})
	}
	hists := e.sink.Totals()
	for i, m := range e.p.Mix.Entries {
		c := pool.Counts(i)
		sr := results.ScenarioResult{
			Name: m.Scenario.String(), Weight: m.Weight,
			Cycles: c.Cycles, Attempts: c.Attempts, LateStarts: c.LateStarts,
			Errors:     errorsOf(c, func(k workload.ErrorClass) string { return pool.Example(i, k) }),
			Bytes:      results.Bytes{Sent: c.Sent, Received: c.Received, Verified: c.Verified},
			Observed:   results.Observed{EOF: c.EOF, Reset: c.Reset, LostResponses: c.Lost},
			Unfinished: workload.UnfinishedMap(c.Unfinished),
		}
		if secs > 0 {
			sr.Rate = float64(c.Cycles) / secs
		}
		phases, err := phasesOf(hists[i])
		if err != nil {
			return err
		}
		sr.Phases = phases
		if target != nil {
			tc := target.Counts(m.Scenario)
			sr.Target = &results.TargetSide{
				Accepted: tc.Attempts, Completed: tc.Cycles,
				Errors:     errorsOf(tc, func(k workload.ErrorClass) string { return target.Example(m.Scenario, k) }),
				Bytes:      results.Bytes{Sent: tc.Sent, Received: tc.Received},
				Observed:   results.Observed{EOF: tc.EOF, Reset: tc.Reset},
				Unfinished: workload.UnfinishedMap(tc.Unfinished),
			}
		}
		rec.Scenarios = append(rec.Scenarios, sr)
	}
	rec.Totals = totalsOf(rec.Scenarios, secs)
	if w := pool.HoldWaits(); w.Count > 0 {
		rec.Totals.ClientHoldWaits = &results.HoldWaits{Count: w.Count, WaitedNs: int64(w.Total)}
	}
	if target != nil {
		if w := target.HoldWaits(); w.Count > 0 {
			rec.Totals.TargetHoldWaits = &results.HoldWaits{Count: w.Count, WaitedNs: int64(w.Total)}
		}
	}
	if d := e.sink.Dropped(); d > 0 && rec.Collector != nil {
		rec.Collector.DroppedLatencies = d
	}
	return nil
}
