package runner

import (
	"context"
	"fmt"
	"github.com/closeload/closeload/internal/ctxtime"
	"io"
	"runtime"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/results"
	"github.com/closeload/closeload/sysctl"
	"github.com/closeload/closeload/workload"
)

// runStorm runs the storm shape in this process (alone, as a --shard, or
// as a child of --procs), after runHere has prepared the record and the
// sysctls, and writes the record.
func runStorm(ctx context.Context, plan *Plan, rec *results.Run, as []sysctl.Assignment, out Output) (*results.Run, error) {
	s := plan.Spec
	sp := plan.Storm
	child := procsChildLinkFromEnv()
	stormConfig(plan, &rec.Config)
	sink := collector.NewLatencySink(1)

	var target *workload.StormTarget
	dst := plan.Target
	if plan.Builtin {
		var err error
		target, err = workload.StartStormTarget(workload.StormTargetConfig{
			Listen: plan.Listen, Scenario: sp.Scenario, Closer: sp.Closer, Window: s.StormWindow,
			Hold: s.Hold, ResponseSize: s.ResponseSize, ReusePort: s.ReusePort,
		}, sink)
		if err != nil {
			return nil, err
		}
		defer target.Close()
		dst = target.Addr()
	} else if err := probe(dst, s.Timeout); err != nil {
		return nil, err
	}

	cfg := workload.StormConfig{
		N: sp.N, Rate: s.Rate, Target: dst, Sources: plan.Sources, Scenario: sp.Scenario, Closer: sp.Closer,
		Hold: s.Hold, Window: s.StormWindow, Timeout: s.Timeout, StartAt: plan.StartAt,
	}
	if target != nil {
		cfg.OnClose = target.ScheduleClose
	}
	var startErr error
	switch {
	case child != nil:
		// The parent starts and closes every shard together.
		child.send(childStatus{Event: "listening"})
		cfg.StartAt, startErr = child.wait(ctx, "start")
		cfg.Ready = func(ctx context.Context, c workload.StormSideCounts) (time.Time, error) {
			child.send(childStatus{Event: "opened", Opened: c.Opened})
			return child.wait(ctx, "close")
		}
	default:
		if !plan.StartAt.IsZero() {
			// Shards on several hosts start together (a late one says so).
			waitStart(plan.StartAt, ctx.Done(), func(m string) { fmt.Fprintf(out.Stderr, "closeload: %s\n", m) })
		}
		if !sp.CloseAt.IsZero() {
			at := sp.CloseAt
			cfg.Ready = func(context.Context, workload.StormSideCounts) (time.Time, error) { return at, nil }
		}
	}
	storm, err := workload.NewStorm(cfg, sink)
	if err != nil {
		return nil, err
	}
	counts := func() collector.WorkloadCounts {
		c := storm.Counts()
		return collector.WorkloadCounts{Cycles: c.Closed, Errors: c.ErrorTotal(), Attempts: c.Attempts, Held: c.Held}
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	sampler, samplerErr := newRunSampler(runCtx, collector.SamplerConfig{
		ProcRoot: "/proc", Source: s.CollectorSource, Interval: s.Interval, Ports: []uint16{dst.Port()}, Workload: counts, MaxCPU: stormSamplerCPU,
	})
	if samplerErr == nil {
		sampler.Start()
	}
	// The live line ends (and clears) before the caller prints the summary.
	var prog sync.WaitGroup
	if out.Progress && IsTerminal(out.Stderr) && child == nil {
		prog.Add(1)
		go func() { defer prog.Done(); stormProgress(runCtx, out.Stderr, storm, target) }()
	}

	if startErr != nil {
		// Stopped before the start: the storm opens nothing and the
		// record says so.
		cancel()
	}
	rec.Start = time.Now()
	runErr := storm.Run(runCtx)
	_, _, closeAt, deadline := storm.Times()
	// The target's last connections end just after the client's (or, in a
	// sharded storm, with other shards' clients): wait for them.
	for target != nil && runErr == nil && target.Live() > 0 && time.Now().Before(deadline) {
		if sleepErr := ctxtime.Sleep(ctx, 10*time.Millisecond); sleepErr != nil {
			runErr = sleepErr
		}
	}
	if target != nil {
		target.Close()
	}
	rec.End = time.Now()
	rec.Provenance.GOMAXPROCS = runtime.GOMAXPROCS(0)
	cancel()
	prog.Wait()
	applySampling(rec, stopSampling(sampler, samplerErr), samplerErr)
	rec.Sysctls.After = sysctl.SnapshotWith("/proc", as)
	switch {
	case runErr != nil && ctx.Err() != nil:
		rec.Interrupted, rec.InterruptReason = true, "interrupted by signal"
	case startErr != nil:
		rec.Interrupted, rec.InterruptReason = true, "before the start: "+startErr.Error()
	case runErr != nil:
		rec.Interrupted, rec.InterruptReason = true, runErr.Error()
	}
	if err := fillStorm(rec, plan, storm, target, sink, closeAt); err != nil {
		return nil, err
	}
	if d := sink.Dropped(); d > 0 {
		rec.Collector.Notes = append(rec.Collector.Notes, droppedNote(d))
	}
	if err := results.Write(plan.Out, rec); err != nil {
		return rec, err
	}
	return rec, nil
}

// stormSamplerCPU lifts the CPU budget of a storm's state counts (the
// default is collector.DefaultMaxCPU): the state timeline is what a storm
// is about, and while connections are held the workload is idle. Counting
// 500,000 sockets costs about 0.3 s of a core, which a 5% budget would
// space out to one count every 6 s; raise --interval instead.
const stormSamplerCPU = -1

// samplerCPU is the state counts' budget for a plan.
func samplerCPU(plan *Plan) float64 {
	if plan.Storm != nil {
		return stormSamplerCPU
	}
	return 0
}

// stormConfig records the storm's configuration.
func stormConfig(plan *Plan, c *results.Config) {
	sp := plan.Storm
	c.Shape = "storm"
	c.Storm = sp.N
	c.StormWindow = plan.Spec.StormWindow
	c.Closer = sp.Closer.String()
	c.Conns = 0
	c.Duration = 0
	if plan.Spec.Rate > 0 {
		c.Rate, c.Arrival = plan.Spec.Rate, ""
	}
	c.Mix = []results.MixEntry{{Scenario: sp.Scenario.String(), Weight: 1}}
	if !plan.StartAt.IsZero() {
		c.StartAt = plan.StartAt
	}
}

// fillStorm turns the storm's counters and histograms into the record.
func fillStorm(rec *results.Run, plan *Plan, storm *workload.Storm, target *workload.StormTarget, sink *collector.LatencySink, closeAt time.Time) error {
	c := storm.Counts()
	openStart, _, _, _ := storm.Times()
	last := c.LastGone
	sr := results.ScenarioResult{
		Name: plan.Storm.Scenario.String(), Weight: 1,
		Cycles: c.Closed, Attempts: c.Attempts, LateStarts: c.LateStarts,
		Errors:   errorsOf(workload.Counts{Errors: c.Errors}, storm.Example),
		Bytes:    results.Bytes{Received: c.Received, Sent: c.Sent},
		Observed: results.Observed{EOF: c.Closed, Reset: c.Reset},
	}
	phases, err := phasesOf(sink.Totals()[0])
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
	}
	if !closeAt.IsZero() && !last.IsZero() {
		st.TimeToLastClose = int64(last.Sub(closeAt))
	}
	rec.Storm = st
	if !openStart.IsZero() && !last.IsZero() {
		rec.MeasuredSeconds = last.Sub(openStart).Seconds()
	}
	rec.Scenarios = []results.ScenarioResult{sr}
	rec.Totals = results.Totals{
		Cycles: sr.Cycles, Attempts: sr.Attempts, LateStarts: sr.LateStarts, Errors: sr.Errors, Bytes: sr.Bytes,
	}
	if rec.MeasuredSeconds > 0 {
		sr.Rate = float64(sr.Cycles) / rec.MeasuredSeconds
		rec.Scenarios[0].Rate = sr.Rate
		rec.Totals.Rate = sr.Rate
	}
	return nil
}

// stormProgress is the live line of a storm: opened, held, closed, failed.
func stormProgress(ctx context.Context, w io.Writer, storm *workload.Storm, target *workload.StormTarget) {
	liveLine(ctx, w, func(el time.Duration) string {
		c := storm.Counts()
		tl := 0
		if target != nil {
			tl = target.Live()
		}
		return fmt.Sprintf("%5.1fs  storm: opened %d  held %d  closed %d  failed %d  target holds %d",
			el.Seconds(), c.Opened, c.Held, c.Closed, c.Failed, tl)
	})
}

// droppedNote says that latencies beyond the histograms' 60 s were left
// out: a storm's total phase (dial → gone) spans its hold.
func droppedNote(n int64) string {
	return fmt.Sprintf("%d latencies over 60 s left out of the histograms (a storm's total phase spans the opening and --hold)", n)
}

// droppedOf reads a droppedNote back.
func droppedOf(note string) int64 {
	var n int64
	if _, err := fmt.Sscanf(note, "%d latencies over 60 s", &n); err != nil {
		return 0
	}
	return n
}

// stormShape describes a storm for the summary's first lines.
func stormShape(c results.Config) string {
	s := fmt.Sprintf("storm of %d, closer %s, window %v", c.Storm, c.Closer, c.StormWindow)
	if c.Rate > 0 {
		s += fmt.Sprintf(", opened at %.0f/s", c.Rate)
	}
	if c.Procs > 1 {
		s += fmt.Sprintf(", %d processes", c.Procs)
	}
	return s
}

// WriteStormSummary prints a storm's own figures: what was opened and how
// every connection ended, the hold peak, drain and time to the last close.
func WriteStormSummary(w io.Writer, r *results.Run) {
	st := r.Storm
	if st == nil {
		return
	}
	verdict := "every connection accounted for"
	if st.Unaccounted > 0 {
		verdict = fmt.Sprintf("%d connections UNACCOUNTED", st.Unaccounted)
	}
	fmt.Fprintf(w, "\n%s: %s\n", stormShape(r.Config), verdict)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "opened\tclosed (EOF)\tfailed\tunaccounted\thold peak\tdrain p99\tto last close\t")
	drain := "-"
	for _, s := range r.Scenarios {
		if p, ok := s.Phases["drain"]; ok {
			drain = dur(p.P99)
		}
	}
	fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%s\t%s\t\n", st.Opened, st.Closed, st.Failed, st.Unaccounted, st.HoldPeak, drain, dur(st.TimeToLastClose))
	tw.Flush()
	if never := uint64(r.Config.Storm) - min(uint64(r.Config.Storm), st.Opened); never > 0 {
		fmt.Fprintf(w, "%d connections never opened (see errors)\n", never)
	}
}
