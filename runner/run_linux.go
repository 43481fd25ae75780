package runner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/metrics"
	"github.com/closeload/closeload/results"
	"github.com/closeload/closeload/sysctl"
	"github.com/closeload/closeload/workload"
)

// Run carries out a plan — validated here, once — and returns its record:
// in a fresh network namespace (a child process) when the plan isolates
// it, as several processes when it asks for them, else in this process.
// The record, with its verdict, is written to plan.Out when set ("-":
// Stdout). An interrupted run still returns and writes its record, marked.
func Run(ctx context.Context, p *Plan, out Output) (*results.Run, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	out = out.orDiscard()
	if p.MetricsListen != "" && p.metricsLn == nil {
		a, _ := metrics.ListenAddr(p.MetricsListen)
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return nil, fieldErr("MetricsListen", "%s: %v", p.MetricsListen, err)
		}
		defer ln.Close()
		p.metricsLn = ln
		fmt.Fprintf(out.Stderr, "closeload: metrics: http://%s%s\n", ln.Addr(), metrics.MetricsPath)
	}
	rec, err := execute(ctx, p, nil, out)
	if rec != nil && p.Out != "" {
		if werr := writeRecord(p.Out, rec, out); werr != nil {
			rec.Verdict.Status = results.VerdictFailed
			rec.Verdict.Reasons = append(rec.Verdict.Reasons, werr.Error())
			return rec, errors.Join(err, werr)
		}
	}
	return rec, err
}

// execute runs a validated plan where it belongs; link is set in a child.
func execute(ctx context.Context, p *Plan, link *childLink, out Output) (*results.Run, error) {
	inChild, _ := sysctl.InIsolatedChild()
	isolate, required := p.isolation()
	if isolate && !inChild && link == nil {
		rec, err := runIsolated(ctx, p, out)
		if err == nil || required || !canFallBack(err) {
			return rec, err
		}
		note := fmt.Sprintf("not isolated: %v; running in the host's network namespace", err)
		fmt.Fprintf(out.Stderr, "closeload: %s\n", note)
		rec, err = runHere(ctx, p, link, out)
		if rec != nil {
			rec.Notes = append(rec.Notes, note)
		}
		return rec, err
	}
	return runHere(ctx, p, link, out)
}

// canFallBack says whether an isolation failure leaves the host namespace
// as an answer: the kernel refused the namespace, or this binary cannot
// re-execute itself.
func canFallBack(err error) bool {
	return errors.Is(err, sysctl.ErrIsolation) || errors.Is(err, ErrNoReexec)
}

// runIsolated runs the plan in a child process in a fresh network
// namespace and returns the record it sends back.
func runIsolated(ctx context.Context, p *Plan, out Output) (*results.Run, error) {
	c, err := startChild(ctx, p, roleIsolated, true, out.Stderr)
	if err != nil {
		return nil, err
	}
	res, err := c.wait()
	if err != nil {
		return nil, fmt.Errorf("isolated run: %w", err)
	}
	rec, err := res.Record, res.err()
	var sig *SignalError
	if cause := context.Cause(ctx); errors.As(cause, &sig) && rec != nil {
		// The child was stopped on this process's behalf (SIGTERM passed
		// on); the record names the signal this process received.
		rec.InterruptReason = sig.Error()
		if rec.Verdict != nil && rec.Verdict.Status == results.VerdictInterrupted {
			rec.Verdict.Reasons = []string{sig.Error()}
		}
		err = sig
	}
	return rec, err
}

// runHere is the pipeline every run goes through in the process that makes
// its load: sysctls (in its own namespace, or on the host with a journal),
// the engine's start, the common start time, the sampler, the live line,
// the load, and the record with its verdict.
func runHere(ctx context.Context, p *Plan, link *childLink, out Output) (*results.Run, error) {
	rec := newRecord(p)
	if inChild, ns := sysctl.InIsolatedChild(); inChild {
		rec.Provenance.Namespace = ns
		if err := sysctl.PrepareIsolatedChild(); err != nil {
			return nil, fmt.Errorf("isolated namespace: %w", err)
		}
	}
	restore, err := applySysctls(p, rec, out)
	if err != nil {
		return nil, err
	}
	defer restore()

	eng := newEngine(p, link, out)
	if err := eng.start(ctx); err != nil {
		eng.close()
		return nil, err
	}
	defer eng.close()
	if rec.Provenance.Namespace == "host" && (link == nil || link.role != roleShard) {
		census, notes := takeCensus(eng.ports())
		rec.Census = census
		for _, n := range notes {
			fmt.Fprintf(out.Stderr, "closeload: warning: %s\n", n)
		}
		rec.Notes = append(rec.Notes, notes...)
	}
	if err := eng.probe(); err != nil {
		return nil, err
	}
	if !p.StartAt.IsZero() && p.Storm == nil {
		// Every shard starts its load at the same wall-clock time; the
		// sampler starts with it, so the series covers only the load.
		waitStart(p.StartAt, ctx.Done(), func(m string) { fmt.Fprintf(out.Stderr, "closeload: %s\n", m) })
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var sampler *collector.Sampler
	var samplerErr error
	if link != nil && link.role == roleShard {
		// The parent samples the shared namespace once for every shard.
		stop := link.report(runCtx, p.Interval, eng.live)
		defer stop()
		samplerErr = errSampledByParent
	} else {
		cfg := collector.SamplerConfig{
			Source: p.CollectorSource, Interval: p.Interval, Ports: eng.ports(), TargetPorts: eng.ports(),
			Workload: eng.live, MaxCPU: eng.samplerCPU(),
		}
		if tt := eng.tracerTargets(); len(tt) > 0 && len(tt) <= collector.MaxTracerTargets {
			cfg.Tracer = &collector.TracerConfig{Targets: tt, Timewait: p.TimewaitLifetime}
		}
		sampler, samplerErr = collector.NewSampler(cfg)
		if samplerErr == nil {
			sampler.Start()
		}
	}
	if p.metricsLn != nil {
		if prov := eng.provider(); prov != nil {
			stop := serveMetrics(p, prov, eng.ports())
			defer stop()
		}
	}
	var bg sync.WaitGroup
	if out.Progress && IsTerminal(out.Stderr) && (link == nil || link.role == roleIsolated) {
		bg.Add(1)
		go func() { defer bg.Done(); liveLine(runCtx, out.Stderr, eng.line) }()
	}

	rec.Start = time.Now()
	runErr := eng.run(runCtx, out.Abort)
	rec.End = time.Now()
	cancel()
	bg.Wait()
	applySampling(rec, stopSampling(sampler, samplerErr), samplerErr)
	eng.close()
	rec.Provenance.GOMAXPROCS = workload.PeakGOMAXPROCS()
	rec.Sysctls.After = sysctl.SnapshotWith(sysctl.DefaultProcRoot, p.Sysctls)
	if cause := context.Cause(ctx); cause != nil {
		rec.Interrupted, rec.InterruptReason = true, cause.Error()
		if runErr == nil || errors.Is(runErr, context.Canceled) {
			runErr = cause
		}
	} else if runErr != nil {
		rec.Interrupted, rec.InterruptReason = true, runErr.Error()
	}
	if err := eng.fill(rec); err != nil {
		// Shards that failed, a histogram that would not encode: the
		// record still says what there is, and the run failed.
		runErr = errors.Join(runErr, err)
	}
	if h, ok := eng.(hlogEngine); ok && p.Hlog != "" {
		if err := h.writeHlog(p.Hlog, rec.Start); err != nil {
			runErr = errors.Join(runErr, err)
		}
	}
	judge(rec, p, runErr)
	return rec, runErr
}

// hlogEngine is an engine that keeps an HdrHistogram interval log.
type hlogEngine interface {
	writeHlog(path string, base time.Time) error
}

// errSampledByParent stands for the sampler of a shard of several
// processes: the parent samples the namespace they share.
var errSampledByParent = errors.New("socket states and counters are sampled once by the parent of the shards")

// newEngine picks the plan's engine.
func newEngine(p *Plan, link *childLink, out Output) engine {
	switch {
	case p.Procs > 1 && p.Shard == nil:
		return &procsEngine{p: p, out: out}
	case p.Storm != nil:
		return &stormEngine{p: p, link: link, out: out}
	}
	return &loopEngine{p: p, out: out}
}

// applySysctls sets the plan's sysctls: in the run's own namespace, or on
// the host with a journal and a restore on exit and on signals. The
// returned func restores them (host mode) and is always safe to call.
func applySysctls(p *Plan, rec *results.Run, out Output) (restore func(), err error) {
	rec.Sysctls.Mode = sysctl.ModeNone
	rec.Sysctls.Before = sysctl.SnapshotWith(sysctl.DefaultProcRoot, p.Sysctls)
	if len(p.Sysctls) == 0 {
		return func() {}, nil
	}
	rec.Sysctls.Applied = map[string]string{}
	for _, a := range p.Sysctls {
		rec.Sysctls.Applied[a.Key] = a.Value
	}
	if !p.HostSysctl {
		if inChild, _ := sysctl.InIsolatedChild(); !inChild {
			return nil, errors.New("refusing to set sysctls outside a namespace made for the run (host mode was not asked for)")
		}
		rec.Sysctls.Mode = sysctl.ModeIsolated
		return func() {}, sysctl.Apply(sysctl.DefaultProcRoot, p.Sysctls)
	}
	rec.Sysctls.Mode = sysctl.ModeHost
	j, err := sysctl.ApplyHost(sysctl.DefaultProcRoot, p.Journal, p.Sysctls)
	if err != nil {
		return nil, err
	}
	j.RestoreOnSignal()
	fmt.Fprintf(out.Stderr, "closeload: host sysctls changed; old values journaled in %s (after a crash: closeload sysctl restore %s)\n", j.Path(), j.Path())
	return func() {
		if err := j.Restore(); err != nil {
			fmt.Fprintf(out.Stderr, "closeload: restoring sysctls: %v (run: closeload sysctl restore %s)\n", err, j.Path())
		}
	}, nil
}

// newRecord starts a run's record from its plan.
func newRecord(p *Plan) *results.Run {
	return &results.Run{
		Schema:     results.SchemaVersion,
		ID:         p.RunID,
		Matrix:     p.Matrix,
		Variant:    p.Variant,
		Repeat:     p.Repeat,
		Shard:      p.Shard,
		Provenance: NewProvenance(p.Args),
		Config:     configOf(p),
	}
}

// configOf is the record's configuration section.
func configOf(p *Plan) results.Config {
	c := results.Config{
		BuiltinTarget: p.Builtin(), Shape: "closed", Conns: p.Conns, Duration: p.Duration,
		Warmup: p.Warmup, Cycles: p.Cycles, RequestSize: p.RequestSize, ResponseSize: p.ResponseSize,
		Hold: p.Hold, Timeout: p.Timeout, Request: requestLabel(p), Interval: p.Interval,
		StartAt: p.StartAt,
	}
	for _, e := range p.Mix.Entries {
		c.Mix = append(c.Mix, results.MixEntry{Scenario: e.Scenario.String(), Weight: e.Weight})
	}
	if !p.Builtin() {
		c.Target = p.targetLabel()
	}
	if p.Rate > 0 {
		c.Shape, c.Rate, c.Arrival = "open", p.Rate, p.Arrival.String()
	}
	for _, a := range p.Sources {
		c.Sources = append(c.Sources, a.String())
	}
	if len(c.Sources) > 8 {
		c.Sources = []string{fmt.Sprintf("%s-%s (%d)", c.Sources[0], c.Sources[len(c.Sources)-1], len(c.Sources))}
	}
	if st := p.Storm; st != nil {
		c.Shape = "storm"
		c.Storm = st.Mine
		c.StormWindow = st.Window
		if st.Closer != nil {
			c.Closer = st.Closer.String()
		}
		c.Conns, c.Duration = 0, 0
		if p.Rate > 0 {
			c.Arrival = ""
		}
	}
	if p.Procs > 1 {
		c.Procs = p.Procs
	}
	if p.OnRefused != workload.RefusedStop {
		c.OnRefused = p.OnRefused.String()
	}
	c.StallTimeout = p.StallTimeout
	return c
}

// requestLabel is the record's account of the request bytes.
func requestLabel(p *Plan) string {
	switch p.RequestKind {
	case RequestHTTP:
		return "http"
	case RequestFile:
		return "@" + p.RequestFile
	}
	return ""
}

// serveMetrics serves the run's live figures on the plan's metrics socket:
// the engine's counts and latencies, socket states on the run's ports and
// the kernel's counters, read at each scrape.
func serveMetrics(p *Plan, prov metrics.Provider, ports []uint16) (stop func()) {
	e := metrics.New(p.RunID)
	census, cerr := metrics.OpenCensus(collector.StateQuery{Ports: ports})
	e.SetProvider(func() metrics.Live {
		l := prov()
		if cerr == nil {
			_ = census.Fill(&l, metrics.SideAll)
		}
		l.Counters, _ = collector.ReadCounters("")
		return l
	})
	srv := metrics.ServeListener(p.metricsLn, e)
	return func() { _ = srv.Close() }
}
