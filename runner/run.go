package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/results"
	"github.com/closeload/closeload/sysctl"
	"github.com/closeload/closeload/workload"
	"golang.org/x/sys/unix"
)

// ErrRefused reports a target that refuses every connection: closeload says
// so within a second instead of retrying forever.
var ErrRefused = errors.New("target refuses connections")

// Output is where a run writes for the user.
type Output struct {
	Stdout io.Writer
	Stderr io.Writer
	// Progress enables the live line on Stderr (when it is a terminal).
	Progress bool
}

// Run carries out a plan: in a fresh network namespace when it sets sysctls
// (unless in host mode), else here. It writes the record to plan.Out and
// returns it. An interrupted run still writes its record, marked.
func Run(ctx context.Context, plan *Plan, out Output) (*results.Run, error) {
	as, err := sysctl.ParseAssignments(plan.Spec.Sysctls, plan.Spec.AllowUnknown)
	if err != nil {
		return nil, usage("--sysctl: %v", err)
	}
	if plan.Spec.Isolate && plan.Spec.HostSysctl {
		return nil, usage("--isolate and --host-sysctl: choose one")
	}
	if RunsIsolated(plan) {
		if err := sysctl.CheckIsolatable(as); err != nil {
			return nil, usage("--sysctl: %v", err)
		}
		if !plan.Builtin {
			return nil, usage("an isolated run (--isolate, or --sysctl without --host-sysctl) happens in a fresh network namespace, where --target %s cannot be reached; use --host-sysctl (root) to change the host's settings for an external target", plan.Spec.Target)
		}
		return runIsolated(ctx, plan, out)
	}
	return runHere(ctx, plan, as, out)
}

// runIsolated re-executes closeload in a fresh network namespace with the
// same arguments; the child applies the sysctls there, runs and writes the
// record, which the parent reads back.
func runIsolated(ctx context.Context, plan *Plan, out Output) (*results.Run, error) {
	args := append([]string{}, plan.Spec.Args...)
	// Pin what the child must not choose for itself.
	args = append(args, "--run-id", plan.RunID, "--out", plan.Out)
	cmd := sysctl.IsolatedCommand(ctx, args)
	cmd.Stdout, cmd.Stderr = out.Stdout, out.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("isolated run: %w", sysctl.ExplainStart(err))
	}
	if err := cmd.Wait(); err != nil {
		if r, rerr := results.ReadFile(plan.Out); rerr == nil && r.Interrupted {
			return r, nil
		}
		return nil, fmt.Errorf("isolated run: %w", err)
	}
	return results.ReadFile(plan.Out)
}

func runHere(ctx context.Context, plan *Plan, as []sysctl.Assignment, out Output) (*results.Run, error) {
	s := plan.Spec
	rec := &results.Run{
		Schema:     results.SchemaVersion,
		ID:         plan.RunID,
		Matrix:     s.Matrix,
		Variant:    s.Variant,
		Repeat:     s.Repeat,
		Shard:      plan.Shard,
		Provenance: NewProvenance(s.Args),
		Config:     configOf(plan),
	}
	if inChild, ns := sysctl.InIsolatedChild(); inChild {
		rec.Provenance.Namespace = ns
		if err := sysctl.PrepareIsolatedChild(); err != nil {
			return nil, fmt.Errorf("isolated namespace: %w", err)
		}
	}
	rec.Sysctls.Mode = "none"
	rec.Sysctls.Before = sysctl.SnapshotWith("/proc", as)
	if len(as) > 0 {
		rec.Sysctls.Applied = map[string]string{}
		for _, a := range as {
			rec.Sysctls.Applied[a.Key] = a.Value
		}
		if plan.Spec.HostSysctl {
			rec.Sysctls.Mode = "host"
			journal := plan.Spec.Journal
			if journal == "" {
				journal = plan.Out + ".sysctl-journal"
			}
			j, err := sysctl.ApplyHost("/proc", journal, as)
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(out.Stderr, "closeload: host sysctls changed; old values journaled in %s (after a crash: closeload sysctl restore %s)\n", journal, journal)
			defer func() {
				if err := j.Restore(); err != nil {
					fmt.Fprintf(out.Stderr, "closeload: restoring sysctls: %v (run: closeload sysctl restore %s)\n", err, journal)
				}
			}()
		} else {
			rec.Sysctls.Mode = "isolated"
			if err := sysctl.Apply("/proc", as); err != nil {
				return nil, err
			}
		}
	}

	if plan.Procs > 1 {
		return runProcs(ctx, plan, rec, as, out)
	}
	if plan.Storm != nil {
		return runStorm(ctx, plan, rec, as, out)
	}

	var target *workload.Target
	targets := make([]netip.AddrPort, len(plan.Mix.Entries))
	if plan.Builtin {
		scen := make([]workload.Scenario, len(plan.Mix.Entries))
		for i, e := range plan.Mix.Entries {
			scen[i] = e.Scenario
		}
		acc := s.Acceptors
		if acc <= 0 {
			acc = min(max(s.Conns, 2), 256)
		}
		var err error
		target, err = workload.StartTarget(workload.TargetConfig{
			Listen: plan.Listen, Scenarios: scen, Acceptors: acc,
			RequestSize: s.RequestSize, ResponseSize: s.ResponseSize,
			Hold: s.Hold, Timeout: s.Timeout, ReusePort: s.ReusePort,
		})
		if err != nil {
			return nil, err
		}
		defer target.Close()
		copy(targets, target.Addrs())
	} else {
		for i := range targets {
			targets[i] = plan.Target
		}
	}
	if err := probe(targets[0], s.Timeout); err != nil {
		return nil, err
	}

	sink := collector.NewLatencySink(len(plan.Mix.Entries))
	pool, err := workload.NewPool(workload.Config{
		Mix: plan.Mix, Targets: targets, Sources: plan.Sources, Conns: s.Conns,
		Rate: s.Rate, Arrival: plan.Arrival, Duration: s.Duration, Cycles: s.Cycles,
		Warmup: s.Warmup, RequestSize: s.RequestSize, ResponseSize: s.ResponseSize,
		Request: plan.Request, Hold: s.Hold, Timeout: s.Timeout, Grace: s.Grace,
	}, sink)
	if err != nil {
		return nil, err
	}

	if !plan.StartAt.IsZero() {
		// Every shard starts its load at the same wall-clock time; the
		// sampler starts with it, so the series covers only the load.
		rec.Config.StartAt = plan.StartAt
		waitStart(plan.StartAt, ctx.Done(), func(m string) { fmt.Fprintf(out.Stderr, "closeload: %s\n", m) })
	}
	ports := make([]uint16, 0, len(targets))
	for _, t := range targets {
		ports = append(ports, t.Port())
	}
	held := func() uint64 {
		h := pool.Held()
		if target != nil {
			h += target.Held()
		}
		return uint64(h)
	}
	sampler, samplerErr := newRunSampler(ctx, collector.SamplerConfig{
		ProcRoot: "/proc", Source: s.CollectorSource, Interval: s.Interval, Ports: ports,
		Workload: func() collector.WorkloadCounts {
			t := pool.LiveTotal()
			return collector.WorkloadCounts{Cycles: t.Cycles, Errors: t.ErrorTotal(), Attempts: t.Attempts, Held: held()}
		},
	})
	if samplerErr == nil {
		sampler.Start()
	}

	hl := newHlogRecorder(sink, plan.Mix, s.Interval, s.Hlog != "")
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var refused error
	var bg sync.WaitGroup
	bg.Add(1)
	go func() {
		defer bg.Done()
		refused = watchRefused(runCtx, pool, targets[0], cancel)
	}()
	if out.Progress && IsTerminal(out.Stderr) {
		bg.Add(1)
		go func() { defer bg.Done(); progress(runCtx, out.Stderr, pool, held, s.Warmup+s.Duration) }()
	}
	hl.start(runCtx)

	rec.Start = time.Now()
	runErr := pool.Run(runCtx)
	// Pool and target raised GOMAXPROCS to give each blocking worker a P.
	rec.Provenance.GOMAXPROCS = runtime.GOMAXPROCS(0)
	rec.End = time.Now()
	cancel()
	bg.Wait()
	hl.stop()

	applySampling(rec, stopSampling(sampler, samplerErr), samplerErr)
	if target != nil {
		target.Close()
	}
	rec.Sysctls.After = sysctl.SnapshotWith("/proc", as)

	switch {
	case refused != nil:
		rec.Interrupted, rec.InterruptReason = true, refused.Error()
	case runErr != nil && ctx.Err() != nil:
		rec.Interrupted, rec.InterruptReason = true, "interrupted by signal"
	}
	if err := fillScenarios(rec, plan, pool, target, sink); err != nil {
		return nil, err
	}
	if err := results.Write(plan.Out, rec); err != nil {
		return rec, err
	}
	if s.Hlog != "" {
		if err := hl.write(s.Hlog, rec.Start); err != nil {
			return rec, err
		}
	}
	if refused != nil {
		return rec, refused
	}
	return rec, nil
}

func configOf(plan *Plan) results.Config {
	s := plan.Spec
	c := results.Config{
		BuiltinTarget: plan.Builtin, Shape: "closed", Conns: s.Conns, Duration: s.Duration,
		Warmup: s.Warmup, Cycles: s.Cycles, RequestSize: s.RequestSize, ResponseSize: s.ResponseSize,
		Hold: s.Hold, Timeout: s.Timeout, Request: s.Request, Interval: s.Interval,
	}
	for _, e := range plan.Mix.Entries {
		c.Mix = append(c.Mix, results.MixEntry{Scenario: e.Scenario.String(), Weight: e.Weight})
	}
	if !plan.Builtin {
		c.Target = plan.Target.String()
	}
	if s.Rate > 0 {
		c.Shape, c.Rate, c.Arrival = "open", s.Rate, plan.Arrival.String()
	}
	for _, a := range plan.Sources {
		c.Sources = append(c.Sources, a.String())
	}
	if len(c.Sources) > 8 {
		c.Sources = []string{fmt.Sprintf("%s-%s (%d)", c.Sources[0], c.Sources[len(c.Sources)-1], len(c.Sources))}
	}
	return c
}

// probe makes one connection before the run so that a target that is not
// there is reported at once, as itself, rather than as a run of errors.
func probe(t netip.AddrPort, timeout time.Duration) error {
	sa := &unix.SockaddrInet4{Port: int(t.Port()), Addr: t.Addr().Unmap().As4()}
	fam := unix.AF_INET
	var to unix.Sockaddr = sa
	if !t.Addr().Unmap().Is4() {
		fam = unix.AF_INET6
		to = &unix.SockaddrInet6{Port: int(t.Port()), Addr: t.Addr().As16()}
	}
	fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(min(timeout, time.Second).Nanoseconds())
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	err = unix.Connect(fd, to)
	switch {
	case err == nil:
		// A plain close, like a load balancer's TCP check. An RST would
		// leave no TIME_WAIT, but some servers die of it: crr's server
		// reads ECONNRESET, writes anyway and is killed by SIGPIPE.
		return nil
	case errors.Is(err, unix.ECONNREFUSED):
		return fmt.Errorf("%w: %s refused the connection (ECONNREFUSED); is a server listening there?", ErrRefused, t)
	case errors.Is(err, unix.EINPROGRESS), errors.Is(err, unix.EAGAIN), errors.Is(err, unix.ETIMEDOUT):
		return fmt.Errorf("%w: %s did not answer within %v", ErrRefused, t, min(timeout, time.Second))
	}
	return fmt.Errorf("%w: %s: %v", ErrRefused, t, err)
}

// watchRefused stops the run when, a second in, every connection was
// refused: the target went away, and a run of refusals measures nothing.
func watchRefused(ctx context.Context, pool *workload.Pool, t netip.AddrPort, stop func()) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var last workload.Counts
	var since time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		c := pool.LiveTotal()
		refusedNow := c.Errors[workload.ErrRefused] - last.Errors[workload.ErrRefused]
		okNow := c.Cycles - last.Cycles
		last = c
		if refusedNow > 0 && okNow == 0 {
			if since.IsZero() {
				since = time.Now()
			}
			if time.Since(since) >= time.Second {
				pool.Stop()
				stop()
				return fmt.Errorf("%w: %s refused %d connections in a row for 1s, none succeeded; run stopped",
					ErrRefused, t, c.Errors[workload.ErrRefused])
			}
		} else {
			since = time.Time{}
		}
	}
}

// IsTerminal reports whether w is a terminal: live views redraw in place
// only there, and print one line per interval to pipes and files.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// liveLine redraws one status line on a terminal every second until ctx
// ends, then clears it; line gets the time since the start.
func liveLine(ctx context.Context, w io.Writer, line func(elapsed time.Duration) string) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprint(w, "\r\033[K")
			return
		case <-tick.C:
		}
		fmt.Fprint(w, "\r\033[K"+line(time.Since(start)))
	}
}

// progress is the live line of a run: elapsed, cycles, rate, errors, held.
func progress(ctx context.Context, w io.Writer, pool *workload.Pool, held func() uint64, total time.Duration) {
	var last uint64
	liveLine(ctx, w, func(el time.Duration) string {
		c := pool.LiveTotal()
		defer func() { last = c.Cycles }()
		return fmt.Sprintf("%5.1fs/%v  cycles %d  %d/s  errors %d  held %d", el.Seconds(), total, c.Cycles, c.Cycles-last, c.ErrorTotal(), held())
	})
}

// RunsIsolated reports whether Run will hand the plan to an isolated child
// (which prints its own summary).
func RunsIsolated(plan *Plan) bool {
	inChild, _ := sysctl.InIsolatedChild()
	return (len(plan.Spec.Sysctls) > 0 || plan.Spec.Isolate) && !plan.Spec.HostSysctl && !inChild
}

// WriteKernelSummary prints the collector's part of the summary: peak
// socket states and close-related counter deltas.
func WriteKernelSummary(w io.Writer, r *results.Run) {
	if r.Collector == nil {
		return
	}
	collector.WriteSummary(w, collector.SamplerResult{Series: r.Series, Counters: r.Counters, Peaks: r.Peaks, Health: *r.Collector})
}
