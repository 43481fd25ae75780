package benchmarks

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/workload"
)

// BenchmarkCycle measures one full connection of each scenario, client and
// built-in target both in this process on loopback, 8 workers spread over
// the default loopback sources: ns/op is the cost of one cycle on the
// machine, cycles/s the throughput. Hold scenarios hold for 0 s here, so the
// figure is the cost of their close path, not of waiting.
func BenchmarkCycle(b *testing.B) {
	for _, info := range workload.Catalogue() {
		b.Run(info.Name, func(b *testing.B) {
			size := 16
			if info.Scenario == workload.StreamEcho {
				size = 16 << 10
			}
			target := startTarget(b, info.Scenario, size)
			churn(b, target, info.Scenario, size)
			if info.Scenario == workload.StreamEcho {
				b.SetBytes(int64(size))
			}
		})
	}
}

// startTarget starts the built-in target of one scenario on loopback, 8
// acceptors, closed when the benchmark ends.
func startTarget(b *testing.B, s workload.Scenario, requestSize int) *workload.Target {
	b.Helper()
	target, err := workload.StartTarget(workload.TargetConfig{
		Listen: netip.MustParseAddrPort("127.0.0.1:0"), Scenarios: []workload.Scenario{s},
		Acceptors: 8, RequestSize: requestSize, ResponseSize: 16, Timeout: 5 * time.Second,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { target.Close() })
	return target
}

// churn makes b.N connections of scenario s against target with 8 workers
// over the default loopback sources, timed alone, and reports cycles/s.
func churn(b *testing.B, target *workload.Target, s workload.Scenario, requestSize int) {
	b.Helper()
	pool, err := workload.NewPool(workload.Config{
		Mix: workload.NewMix(s), Targets: target.Addrs(), Conns: 8,
		Sources: workload.DefaultSources(netip.MustParseAddr("127.0.0.1")), Cycles: uint64(b.N),
		Duration: time.Hour, RequestSize: requestSize, ResponseSize: 16, Timeout: 5 * time.Second,
	}, collector.NewLatencySink(1))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	if err := pool.Run(context.Background()); err != nil {
		b.Fatal(err)
	}
	el := time.Since(start)
	b.StopTimer()
	c := pool.Counts(0)
	if c.ErrorTotal() > uint64(b.N)/100+1 {
		b.Fatalf("%d errors in %d cycles: %v", c.ErrorTotal(), b.N, c.Errors)
	}
	b.ReportMetric(float64(c.Cycles)/el.Seconds(), "cycles/s")
}

// BenchmarkRecordPhases measures what a worker pays to record one
// connection's four phases: the goal is under 100 ns and no allocation.
func BenchmarkRecordPhases(b *testing.B) {
	sink := collector.NewLatencySink(1)
	rec := sink.NewRecorder()
	t := collector.Timings{18_000, 190_000, 180_000, 240_000}
	b.ReportAllocs()
	i := int64(0)
	for b.Loop() {
		i++
		t[collector.PhaseTotal] = 240_000 + i%4096
		rec.Record(0, &t)
	}
}
