package benchmarks

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/workload"
)

// The kernel-event benchmarks: what the eBPF tracer costs to read and what
// it costs the churn it watches.
//
//	go test ./benchmarks -run '^$' -bench Events -benchtime 3x

// benchTracer opens a tracer on the helper namespace's run port, skipping
// where eBPF is not permitted.
func benchTracer(b *testing.B, ns *benchNS) *collector.Tracer {
	b.Helper()
	tr, err := collector.OpenTracer(collector.TracerConfig{
		NetnsPath: fmt.Sprintf("/proc/%d/ns/net", ns.pid),
		Targets:   []collector.TracerTarget{{Port: ns.port, Scenario: "bench"}},
	})
	if errors.Is(err, collector.ErrTracerUnavailable) {
		b.Skipf("tracer: %v", err)
	}
	if err != nil {
		b.Fatal(err)
	}
	return tr
}

// BenchmarkEventsCensus reads a census of the namespace holding about 100k
// sockets three ways, side by side (goal: the tracer's <= 100 µs): the
// tracer's census derived from its counters, which does not depend on the
// number of sockets, and a sock_diag or /proc count of every socket.
func BenchmarkEventsCensus(b *testing.B) {
	b.Run("ebpf", func(b *testing.B) {
		ns := sharedNS(b)
		tr := benchTracer(b, ns)
		defer tr.Close()
		b.ReportAllocs()
		b.ResetTimer()
		cpu := startCPU()
		for range b.N {
			if _, err := tr.Census(); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		cpu.report(b)
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1e3/float64(b.N), "µs/census")
		b.ReportMetric(float64(ns.sockets), "sockets")
	})
	for _, src := range []string{collector.SourceNetlink, collector.SourceProc} {
		b.Run(src, func(b *testing.B) {
			ns := sharedNS(b)
			c := timeCounts(b, ns.query(src))
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1e3/float64(b.N), "µs/census")
			b.ReportMetric(float64(c.Sockets()), "sockets")
		})
	}
}

// BenchmarkEventsSampler10Hz runs the Sampler at 10 Hz for one second per
// op with its states from the tracer's census, in the namespace of 100k
// sockets, and reports this process's CPU as a share of one core (goal:
// < 1%); the counters it reads every interval are included. TIME_WAIT
// still needs a socket count: "default-budget" spends up to the default 3%
// of a core on it, "census-only" a budget so small that only the first and
// the final sample count it (both outside the measured window).
func BenchmarkEventsSampler10Hz(b *testing.B) {
	for _, tc := range []struct {
		name   string
		maxCPU float64
	}{{"default-budget", 0}, {"census-only", 1e-9}} {
		b.Run(tc.name, func(b *testing.B) {
			ns := sharedNS(b)
			tr := benchTracer(b, ns) // skips where eBPF is refused
			tr.Close()
			netns := fmt.Sprintf("/proc/%d/ns/net", ns.pid)
			s, err := collector.NewSampler(collector.SamplerConfig{
				ProcRoot: fmt.Sprintf("/proc/%d", ns.pid), NetnsPath: netns,
				Source: collector.SourceEBPF, Interval: 100 * time.Millisecond, Ports: []uint16{ns.port}, TargetPorts: []uint16{ns.port},
				Tracer: &collector.TracerConfig{NetnsPath: netns, Targets: []collector.TracerTarget{{Port: ns.port, Scenario: "bench"}}},
				MaxCPU: tc.maxCPU,
			})
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			s.Start()
			// Steady state: after the first sample (which always counts
			// TIME_WAIT) and before the final one in Stop.
			time.Sleep(150 * time.Millisecond)
			cpu0, wall0 := processCPU(), time.Now()
			time.Sleep(time.Duration(b.N) * time.Second)
			cpu, wall := processCPU()-cpu0, time.Since(wall0)
			r := s.Stop()
			b.StopTimer()
			if r.Health.Source != collector.SourceEBPF || len(r.Health.Errors) > 0 {
				b.Fatalf("source %s errors %v", r.Health.Source, r.Health.Errors)
			}
			b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "%cpu_of_core")
			b.ReportMetric(float64(r.Health.MeanCostNs)/1e3, "µs/sample")
			b.ReportMetric(float64(r.Health.Samples-r.Health.Throttled)/float64(r.Health.Samples), "time_wait_counts/sample")
			b.ReportMetric(float64(r.Health.Missed), "missed")
		})
	}
}

// BenchmarkEventsChurn runs client-halfclose cycles (client and built-in
// target in this process, loopback) without the tracer, with it following
// the target's port, and with it also following timewait mini-sockets
// (the timer programs): cycles/s side by side (goal: tracer >= 0.97 of
// off). "cost" runs the tracer with the kernel's BPF run-time statistics
// on (which add a little to every event, so its rate is not the tracer's)
// and reports the programs' own time per event and events per cycle: the
// figure that the machine's noise does not blur.
func BenchmarkEventsChurn(b *testing.B) {
	for _, tc := range []struct {
		name            string
		on, tw, measure bool
	}{{"off", false, false, false}, {"tracer", true, false, false}, {"tracer-timewait", true, true, false}, {"cost", true, false, true}, {"cost-timewait", true, true, true}} {
		b.Run(tc.name, func(b *testing.B) {
			target := startTarget(b, workload.ClientHalfClose, 16)
			if tc.on {
				tr, err := collector.OpenTracer(collector.TracerConfig{
					Targets: []collector.TracerTarget{{Port: target.Addrs()[0].Port(), Scenario: "client-halfclose"}}, Timewait: tc.tw,
				})
				if errors.Is(err, collector.ErrTracerUnavailable) {
					b.Skipf("tracer: %v", err)
				}
				if err != nil {
					b.Fatal(err)
				}
				defer tr.Close()
				if tc.measure {
					st, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
					if err != nil {
						b.Skipf("BPF run-time statistics: %v", err)
					}
					defer st.Close()
					defer func() {
						if runs, cost := tr.RunStats(); runs > 0 {
							b.ReportMetric(float64(cost.Nanoseconds())/float64(runs), "prog-ns/event")
							b.ReportMetric(float64(runs)/float64(b.N), "events/cycle")
							b.ReportMetric(float64(cost.Nanoseconds())/float64(b.N), "prog-ns/cycle")
						}
					}()
				}
			}
			churn(b, target, workload.ClientHalfClose, 16)
		})
	}
}
