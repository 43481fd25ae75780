package runner

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/internal/ctxtime"
	"github.com/closeload/closeload/results"
	"github.com/closeload/closeload/workload"
)

// stormEngine opens a storm of connections, holds them and closes them all
// within a window, in this process (alone, as a shard on another host, or
// as a child of several processes, which then starts and closes it on its
// parent's word).
type stormEngine struct {
	p       *Plan
	link    *childLink
	out     Output
	sink    *collector.LatencySink
	target  *workload.StormTarget
	dst     netip.AddrPort
	storm   *workload.Storm
	startEr error
	closeAt time.Time
	closed  sync.Once
}

// stormSamplerCPU lifts the CPU budget of a storm's state counts (the
// default is collector.DefaultMaxCPU): the state timeline is what a storm
// is about, and while connections are held the workload is idle. Counting
// 500,000 sockets costs about 0.3 s of a core, which a 5% budget would
// space out to one count every 6 s; raise the interval instead.
const stormSamplerCPU = -1

func (e *stormEngine) samplerCPU() float64 { return stormSamplerCPU }

func (e *stormEngine) start(ctx context.Context) error {
	p, st := e.p, e.p.Storm
	sc := p.Mix.Entries[0].Scenario
	e.sink = collector.NewLatencySink(1)
	e.dst = p.Target
	if p.Builtin() {
		t, err := workload.StartStormTarget(workload.StormTargetConfig{
			Listen: p.Listen, Scenario: sc, Closer: *st.Closer, Window: st.Window,
			Hold: p.Hold, ResponseSize: p.ResponseSize, ReusePort: p.ReusePort,
		}, e.sink)
		if err != nil {
			return err
		}
		e.target = t
		e.dst = t.Addr()
	}
	cfg := workload.StormConfig{
		N: st.Mine, Rate: p.Rate, Target: e.dst, Sources: p.Sources, Scenario: sc, Closer: *st.Closer,
		Hold: p.Hold, Window: st.Window, Timeout: p.Timeout, StartAt: p.StartAt,
	}
	if e.target != nil {
		cfg.OnClose = e.target.ScheduleClose
	}
	switch {
	case e.link != nil && e.link.role == roleShard:
		// The parent starts and closes every shard together.
		e.link.send(childMessage{Ev: "listening"})
		cfg.StartAt, e.startEr = e.link.await(ctx, "start")
		cfg.Ready = func(ctx context.Context, c workload.StormSideCounts) (time.Time, error) {
			e.link.send(childMessage{Ev: "opened"})
			return e.link.await(ctx, "close")
		}
	default:
		if !p.StartAt.IsZero() {
			// Shards on several hosts start together (a late one says so).
			waitStart(p.StartAt, ctx.Done(), func(m string) { fmt.Fprintf(e.out.Stderr, "closeload: %s\n", m) })
		}
		if at := st.CloseAt; !at.IsZero() {
			cfg.Ready = func(context.Context, workload.StormSideCounts) (time.Time, error) { return at, nil }
		}
	}
	storm, err := workload.NewStorm(cfg, e.sink)
	if err != nil {
		return err
	}
	e.storm = storm
	return nil
}

func (e *stormEngine) probe() error {
	if e.target != nil {
		return nil // the storm's own target, listening already
	}
	return probe(e.dst, e.p.Timeout)
}

func (e *stormEngine) ports() []uint16 { return []uint16{e.dst.Port()} }

func (e *stormEngine) run(ctx context.Context, abort <-chan struct{}) error {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if e.startEr != nil {
		// Stopped before the start: the storm opens nothing and the
		// record says so.
		cancel()
	}
	if abort != nil {
		go func() {
			select {
			case <-abort:
				cancel()
			case <-runCtx.Done():
			}
		}()
	}
	runErr := e.storm.Run(runCtx)
	_, _, closeAt, deadline := e.storm.Times()
	e.closeAt = closeAt
	// The target's last connections end just after the client's (or, in a
	// sharded storm, with other shards' clients): wait for them.
	for e.target != nil && runErr == nil && e.target.Live() > 0 && time.Now().Before(deadline) {
		if err := ctxtime.Sleep(ctx, 10*time.Millisecond); err != nil {
			runErr = err
		}
	}
	if runErr == nil && e.startEr != nil {
		runErr = fmt.Errorf("before the start: %w", e.startEr)
	}
	return runErr
}

func (e *stormEngine) live() collector.WorkloadCounts {
	c := e.storm.Counts()
	return collector.WorkloadCounts{Cycles: c.Closed, Errors: c.ErrorTotal(), Attempts: c.Attempts, Held: c.Held}
}

func (e *stormEngine) line(el time.Duration) string {
	c := e.storm.Counts()
	tl := 0
	if e.target != nil {
		tl = e.target.Live()
	}
	return fmt.Sprintf("%5.1fs  storm: opened %d  held %d  closed %d  failed %d  target holds %d",
		el.Seconds(), c.Opened, c.Held, c.Closed, c.Failed, tl)
}

func (e *stormEngine) close() {
	e.closed.Do(func() {
		if e.target != nil {
			e.target.Close()
		}
	})
}

// fill turns the storm's counters and histograms into the record.
func (e *stormEngine) fill(rec *results.Run) error {
	storm, target := e.storm, e.target
	c := storm.Counts()
	openStart, _, _, _ := storm.Times()
	last := c.LastGone
	sr := results.ScenarioResult{
		Name: e.p.Mix.Entries[0].Scenario.String(), Weight: 1,
		Cycles: c.Closed, Attempts: c.Attempts, LateStarts: c.LateStarts,
		Errors:   errorsOf(workload.Counts{Errors: c.Errors}, storm.Example),
		Bytes:    results.Bytes{Received: c.Received, Sent: c.Sent},
		Observed: results.Observed{EOF: c.Closed, Reset: c.Reset},
	}
	phases, err := phasesOf(e.sink.Totals()[0])
	if err != nil {
		return err
	}
	sr.Phases = phases
	if target != nil {
		tc := target.Counts()
		sr.Target = &results.TargetSide{
			Accepted: tc.Opened, Completed: tc.Closed,
			Errors:   errorsOf(workload.Counts{Errors: tc.Errors}, target.Example),
			Bytes:    results.Bytes{Sent: tc.Sent, Received: tc.Received},
			Observed: results.Observed{EOF: tc.Closed, Reset: tc.Reset},
		}
		if tc.LastGone.After(last) {
			last = tc.LastGone
		}
	}
	st := &results.StormResult{
		Opened: c.Opened, Closed: c.Closed, Failed: c.Failed, Unaccounted: c.Unaccounted, HoldPeak: c.HoldPeak,
		Unfinished: workload.UnfinishedMap(c.Unfinished),
	}
	sr.Unfinished = st.Unfinished
	if !e.closeAt.IsZero() && !last.IsZero() {
		st.TimeToLastClose = int64(last.Sub(e.closeAt))
	}
	rec.Storm = st
	if !openStart.IsZero() && !last.IsZero() {
		rec.MeasuredSeconds = last.Sub(openStart).Seconds()
	}
	if rec.MeasuredSeconds > 0 {
		sr.Rate = float64(sr.Cycles) / rec.MeasuredSeconds
	}
	rec.Scenarios = []results.ScenarioResult{sr}
	rec.Totals = totalsOf(rec.Scenarios, rec.MeasuredSeconds)
	if d := e.sink.Dropped(); d > 0 && rec.Collector != nil {
		rec.Collector.DroppedLatencies = d
	}
	return nil
}
