// Package closeload opens and closes TCP connections in close
// choreographies against a server and measures what happened — the same
// engine, pipeline and record as the closeload command — from Go code: a
// user's own `go test -bench` can benchmark the close path of the server
// it starts.
//
//	func BenchmarkClose(b *testing.B) {
//		srv := httptest.NewServer(handler)
//		defer srv.Close()
//		load := closeload.New(closeload.Scenario("full-close"), closeload.HTTP(), closeload.Conns(4))
//		load.Benchmark(b, srv.Listener.Addr().String())
//	}
//
// A load writes no file unless asked (Record), leaves GOMAXPROCS as it
// found it, and returns the results.Run record the command writes. Runs in
// a fresh network namespace (the default against the built-in target, and
// whenever sysctls are set) re-execute the binary: a test binary must call
// TestMain from its own TestMain for that, or such runs fall back to the
// caller's namespace (and say so in the record's notes) or, when required,
// fail with an error naming TestMain.
package closeload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/closeload/closeload/results"
	"github.com/closeload/closeload/runner"
	"github.com/closeload/closeload/sysctl"
	"github.com/closeload/closeload/workload"
)

// Option configures a Load.
type Option func(*Load) error

// Load is a configured load; Run makes one run of it.
type Load struct {
	plan   runner.Plan
	stderr io.Writer
	err    error
}

// New returns a load: by default 8 connections in a closed loop for 10 s,
// the default scenario mix, against the built-in target unless Run is given
// a target.
func New(opts ...Option) *Load {
	l := &Load{plan: runner.DefaultPlan()}
	l.plan.Args = []string{"closeload package"}
	for _, o := range opts {
		if err := o(l); err != nil && l.err == nil {
			l.err = err
		}
	}
	return l
}

// Conns sets the workers: connections in flight (closed loop) or at most in
// flight (open loop).
func Conns(n int) Option { return func(l *Load) error { l.plan.Conns = n; return nil } }

// Rate makes an open loop of perSecond connections per second, constant or
// Poisson arrivals (coordinated-omission correct: latency counts from each
// connection's intended start).
func Rate(perSecond float64, poisson bool) Option {
	return func(l *Load) error {
		l.plan.Rate = perSecond
		if poisson {
			l.plan.Arrival = workload.ArrivalPoisson
		}
		return nil
	}
}

// Duration bounds the run by time (after the warm-up).
func Duration(d time.Duration) Option { return func(l *Load) error { l.plan.Duration = d; return nil } }

// Cycles bounds the run by connections; with it alone the run has no time
// bound.
func Cycles(n uint64) Option {
	return func(l *Load) error { l.plan.Cycles, l.plan.Duration = n, 0; return nil }
}

// Warmup runs first and is left out of every figure.
func Warmup(d time.Duration) Option { return func(l *Load) error { l.plan.Warmup = d; return nil } }

// Scenario sets the scenario mix, NAME[:WEIGHT],... as the command takes it.
func Scenario(mix string) Option {
	return func(l *Load) error {
		m, err := workload.ParseMix(mix)
		if err != nil {
			return fmt.Errorf("closeload.Scenario: %w", err)
		}
		l.plan.Mix = m
		return nil
	}
}

// Sources sets the client's source addresses (spread round robin, each
// bound with IP_BIND_ADDRESS_NO_PORT).
func Sources(addrs ...netip.Addr) Option {
	return func(l *Load) error { l.plan.Sources = append([]netip.Addr(nil), addrs...); return nil }
}

// Timeout bounds every connect and read.
func Timeout(d time.Duration) Option { return func(l *Load) error { l.plan.Timeout = d; return nil } }

// Request sends these bytes instead of generated ones (external targets).
func Request(b []byte) Option {
	return func(l *Load) error {
		l.plan.RequestKind, l.plan.Request = runner.RequestFile, append([]byte(nil), b...)
		return nil
	}
}

// HTTP sends an HTTP/1.1 GET with Connection: close and reads the response
// to its end (external targets).
func HTTP() Option {
	return func(l *Load) error { l.plan.RequestKind = runner.RequestHTTP; return nil }
}

// Sampling sets the interval of socket-state and counter samples.
func Sampling(interval time.Duration) Option {
	return func(l *Load) error { l.plan.Interval = interval; return nil }
}

// Sysctl sets a kernel setting for the run, in a fresh network namespace
// of its own (the test binary needs TestMain).
func Sysctl(key, value string) Option {
	return func(l *Load) error {
		a, err := sysctl.ParseAssignment(key+"="+value, false)
		if err != nil {
			return fmt.Errorf("closeload.Sysctl: %w", err)
		}
		l.plan.Sysctls = append(l.plan.Sysctls, a)
		return nil
	}
}

// Isolated requires a fresh network namespace (the test binary needs
// TestMain); Shared runs in the caller's namespace.
func Isolated() Option {
	return func(l *Load) error { l.plan.Netns = runner.NetnsIsolated; return nil }
}

// Shared runs in the caller's network namespace, never a fresh one.
func Shared() Option { return func(l *Load) error { l.plan.Netns = runner.NetnsHost; return nil } }

// Threshold adds a pass/fail criterion ("errors<0.1%", "total.p99<5ms",
// "rate>=10000", "peak.CLOSE_WAIT<100"); the record's verdict says whether
// each held.
func Threshold(expr string) Option {
	return func(l *Load) error {
		t, err := runner.ParseThreshold(expr)
		if err != nil {
			return fmt.Errorf("closeload.Threshold: %w", err)
		}
		l.plan.Thresholds = append(l.plan.Thresholds, t)
		return nil
	}
}

// Record writes the run record to path ("-": standard output).
func Record(path string) Option { return func(l *Load) error { l.plan.Out = path; return nil } }

// Stderr receives warnings (a fallback to the shared namespace, what
// earlier activity left on the host).
func Stderr(w io.Writer) Option { return func(l *Load) error { l.stderr = w; return nil } }

// optionNames names, for each plan field, the option that sets it, so a
// validation error reads in the library's terms.
var optionNames = map[string]string{
	"Mix": "Scenario", "Conns": "Conns", "Rate": "Rate", "Arrival": "Rate", "Duration": "Duration",
	"Cycles": "Cycles", "Warmup": "Warmup", "Sources": "Sources", "Timeout": "Timeout",
	"Request": "Request", "Interval": "Sampling", "Sysctls": "Sysctl", "Netns": "Isolated",
	"Thresholds": "Threshold", "Out": "Record", "Target": "the target",
}

// ErrTargets is returned for more than one target.
var ErrTargets = errors.New("closeload: one target per run (none: the built-in target)")

// Run makes one run of the load against the target given ("host:port"), or
// the built-in target when none is; it returns the record with its verdict.
// A run whose verdict is not ok returns its record and an error saying why.
func (l *Load) Run(ctx context.Context, targets ...string) (*results.Run, error) {
	if l.err != nil {
		return nil, l.err
	}
	p := l.plan
	switch len(targets) {
	case 0:
	case 1:
		ap, err := netip.ParseAddrPort(targets[0])
		if err != nil {
			return nil, fmt.Errorf("closeload: target %q: want IP:PORT: %w", targets[0], err)
		}
		p.Target, p.TargetName = ap, targets[0]
	default:
		return nil, ErrTargets
	}
	rec, err := runner.Run(ctx, &p, runner.Output{Stderr: l.stderr})
	var fe *runner.FieldError
	if errors.As(err, &fe) {
		return nil, fmt.Errorf("closeload: %s", fe.Format(func(f string) string {
			if n, ok := optionNames[f]; ok {
				return n
			}
			return f
		}))
	}
	if err == nil && rec != nil && rec.Verdict != nil && rec.Verdict.Status != results.VerdictOK {
		err = fmt.Errorf("closeload: run %s: %s", rec.Verdict.Status, strings.Join(append(failedThresholds(rec), rec.Verdict.Reasons...), "; "))
	}
	return rec, err
}

func failedThresholds(r *results.Run) []string {
	var out []string
	for _, t := range r.Verdict.Thresholds {
		if !t.Held {
			out = append(out, "threshold failed: "+t.Expr)
		}
	}
	return out
}

// Benchmark makes b.N connections of the load (one per benchmark op) and
// reports the run's figures with ReportMetrics; a run that failed fails b.
func (l *Load) Benchmark(b *testing.B, targets ...string) *results.Run {
	b.Helper()
	c := *l
	c.plan.Cycles, c.plan.Duration, c.plan.Warmup = uint64(b.N), 0, 0
	c.plan.Conns = min(c.plan.Conns, max(b.N, 1))
	b.ResetTimer()
	rec, err := c.Run(b.Context(), targets...)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	ReportMetrics(b, rec)
	return rec
}

// ReportMetrics reports a run's figures on b: connections per second,
// the total phase's p50 and p99 in nanoseconds, and errors per connection.
func ReportMetrics(b *testing.B, r *results.Run) {
	b.Helper()
	b.ReportMetric(r.Totals.Rate, "conns/s")
	var p50, p99 int64
	for _, s := range r.Scenarios {
		if p, ok := s.Phases["total"]; ok {
			p50, p99 = max(p50, p.P50), max(p99, p.P99)
		}
	}
	b.ReportMetric(float64(p50), "p50-ns")
	b.ReportMetric(float64(p99), "p99-ns")
	var errs uint64
	for _, e := range r.Totals.Errors {
		errs += e.Count
	}
	if r.Totals.Attempts > 0 {
		b.ReportMetric(float64(errs)/float64(r.Totals.Attempts), "errors/op")
	}
}

// TestMain lets a test binary re-execute itself for runs in a fresh network
// namespace (isolated, or with sysctls): call it from the package's own
// TestMain. It serves such a run when this process is one, and otherwise
// runs the tests.
//
//	func TestMain(m *testing.M) { closeload.TestMain(m) }
func TestMain(m *testing.M) {
	if code, ok := runner.ServeChild(); ok {
		os.Exit(code)
	}
	os.Exit(m.Run())
}
