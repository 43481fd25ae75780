package collector_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/internal/nstest"
	"github.com/closeload/closeload/results"
	"github.com/closeload/closeload/workload"
)

// openTracer opens a tracer for targets, skipping when eBPF is not
// permitted unless the namespace tests are required.
func openTracer(t *testing.T, targets []collector.TracerTarget) *collector.Tracer {
	t.Helper()
	tr, err := collector.OpenTracer(collector.TracerConfig{Targets: targets})
	if errors.Is(err, collector.ErrTracerUnavailable) && os.Getuid() != 0 && os.Getenv(nstest.RequireEnv) != "1" {
		t.Skipf("tracer: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// scenarioTarget starts the built-in target serving scenarios, one port
// each, and returns it with the tracer's targets.
func scenarioTarget(t *testing.T, hold time.Duration, scenarios ...workload.Scenario) (*workload.Target, []collector.TracerTarget) {
	t.Helper()
	tg, err := workload.StartTarget(workload.TargetConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Scenarios: scenarios,
		Acceptors: 4, RequestSize: 64, ResponseSize: 100, Hold: hold, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tg.Close)
	var tt []collector.TracerTarget
	for _, s := range scenarios {
		a, _ := tg.Addr(s)
		tt = append(tt, collector.TracerTarget{Port: a.Port(), Scenario: s.String()})
	}
	return tg, tt
}

// drive runs n cycles of scenario s against tg and waits (bounded) until
// the target has served them all.
func drive(t *testing.T, tg *workload.Target, s workload.Scenario, n uint64, hold time.Duration) workload.Counts {
	t.Helper()
	a, _ := tg.Addr(s)
	cfg := workload.Config{Mix: workload.NewMix(s), Targets: []netip.AddrPort{a}, Conns: 4, Cycles: n, Duration: 30 * time.Second,
		Sources:     workload.DefaultSources(netip.MustParseAddr("127.0.0.1"))[:8],
		RequestSize: 64, ResponseSize: 100, Hold: hold, Timeout: 5 * time.Second}
	pool, err := workload.NewPool(cfg, collector.NewLatencySink(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c := tg.Counts(s)
		if c.Cycles+c.ErrorTotal() >= n {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return pool.Counts(0)
}

func between(t *testing.T, what string, got, lo, hi uint64) {
	t.Helper()
	if got < lo || got > hi {
		t.Errorf("%s = %d, want %d..%d", what, got, lo, hi)
	}
}

func group(t *testing.T, ev *results.KernelEvents, scenario, side string) results.EventGroup {
	t.Helper()
	g := ev.Group(scenario, side)
	if g == nil {
		t.Fatalf("no events for %s %s; have %+v", scenario, side, ev.Groups)
	}
	return *g
}

func TestTracerSmoke(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		tg, tt := scenarioTarget(t, 50*time.Millisecond, workload.ClientHalfClose)
		tr := openTracer(t, tt)
		drive(t, tg, workload.ClientHalfClose, 200, 50*time.Millisecond)
		time.Sleep(100 * time.Millisecond)
		ev, err := tr.Read()
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range ev.Groups {
			t.Logf("%s %s: %+v", g.Scenario, g.Side, g.Transitions)
			for st, d := range g.Dwell {
				t.Logf("  dwell %s n=%d p50=%d p99=%d", st, d.Count, d.P50, d.P99)
			}
			t.Logf("  rst sent %v recv %v reasons %v tw %v", g.ResetsSent, g.ResetsReceived, g.ResetReasons, g.TimeWaitHandovers)
		}
		t.Logf("methods %v untracked %d", ev.Methods, ev.Untracked)
	})
}
