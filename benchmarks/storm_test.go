package benchmarks

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/results"
	"github.com/closeload/closeload/sysctl"
	"github.com/closeload/closeload/workload"
)

// Storm benchmarks (issue 7). Each runs a storm with client and built-in
// target in one process, in a fresh network namespace (a child of the
// benchmark binary), and reports:
//
//   - BenchmarkStormHold: user memory per held connection, as the growth of
//     VmRSS while 9,000 connections are held open and then half-closed
//     (close-wait-leak: client FIN_WAIT_2, target CLOSE_WAIT, both with
//     their descriptors). 9,000 because client and target share the
//     20,000-descriptor limit of one process. B/conn counts both ends of a
//     connection; the goal is at most 1.5 KB.
//   - BenchmarkStormDrain: a storm of 9,000 half-closes at once (closer
//     client): drain p50/p99 (own FIN → peer's EOF) and the time from the
//     close time to the last connection gone.
//
//	go test ./benchmarks/ -run '^$' -bench Storm -benchtime 3x
//
// Storms beyond one process (250,000 held, 100,000 closed) run with the
// real binary and --procs; see the README section "Storms and scale".

const stormChildEnv = "CLOSELOAD_BENCH_STORM_CHILD"

// stormBenchConns fits client and target of each connection in one
// process's 20,000 descriptors.
const stormBenchConns = 9000

// stormMetrics is what the child reports.
type stormMetrics struct {
	Conns          int     `json:"conns"`
	RSSOpenB       float64 `json:"rss_open_b_per_conn"`
	RSSHalfClosedB float64 `json:"rss_halfclosed_b_per_conn"`
	HeapB          float64 `json:"heap_b_per_conn"`
	DrainP50       int64   `json:"drain_p50_ns"`
	DrainP99       int64   `json:"drain_p99_ns"`
	TimeToLast     int64   `json:"time_to_last_close_ns"`
	Closed         uint64  `json:"closed"`
	Failed         uint64  `json:"failed"`
	Unaccounted    uint64  `json:"unaccounted"`
	HoldPeak       uint64  `json:"hold_peak"`
}

// TestStormBenchChild is not a test: it is the child of the storm
// benchmarks, run in a fresh network namespace.
func TestStormBenchChild(t *testing.T) {
	mode := os.Getenv(stormChildEnv)
	if mode == "" {
		t.Log("child of the storm benchmarks; nothing to do as a test")
		return
	}
	if err := sysctl.PrepareIsolatedChild(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(4)
	}
	m, err := stormChild(mode)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(5)
	}
	json.NewEncoder(os.Stdout).Encode(m)
	os.Exit(0)
}

func vmRSS() (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/self/status")
}

func heapInUse() int64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse + ms.StackInuse)
}

// runBenchStorm runs one storm in this process; at(phase) runs when the
// connections are open ("open") and once half-closed ("halfclosed").
func runBenchStorm(n int, scen workload.Scenario, hold, window time.Duration, at func(string)) (workload.StormSideCounts, *collector.LatencySink, time.Time, time.Duration, error) {
	sink := collector.NewLatencySink(1)
	closer, _ := workload.StormCloser(scen)
	target, err := workload.StartStormTarget(workload.StormTargetConfig{
		Listen: netip.MustParseAddrPort("127.0.0.1:0"), Scenario: scen, Closer: closer,
		Window: window, Hold: hold, ResponseSize: 16,
	}, sink)
	if err != nil {
		return workload.StormSideCounts{}, nil, time.Time{}, 0, err
	}
	defer target.Close()
	var closeAt time.Time
	// halfDone is closed once at("halfclosed") has run: it writes what the
	// caller reads after this returns.
	var halfDone chan struct{}
	defer func() {
		if halfDone != nil {
			<-halfDone
		}
	}()
	cfg := workload.StormConfig{
		N: n, Target: target.Addr(), Scenario: scen, Closer: closer, Hold: hold, Window: window,
		Timeout: 10 * time.Second, Sources: workload.DefaultSources(netip.MustParseAddr("127.0.0.1")),
		OnClose: target.ScheduleClose,
	}
	cfg.Ready = func(ctx context.Context, c workload.StormSideCounts) (time.Time, error) {
		if at != nil {
			at("open")
		}
		closeAt = time.Now().Add(100 * time.Millisecond)
		if at != nil && scen == workload.CloseWaitLeak {
			halfDone = make(chan struct{})
			go func() {
				defer close(halfDone)
				// Half-closed: FINs sent at closeAt, leak until closeAt+hold.
				time.Sleep(time.Until(closeAt) + hold/2)
				at("halfclosed")
			}()
		}
		return closeAt, nil
	}
	st, err := workload.NewStorm(cfg, sink)
	if err != nil {
		return workload.StormSideCounts{}, nil, time.Time{}, 0, err
	}
	if err := st.Run(context.Background()); err != nil {
		return workload.StormSideCounts{}, nil, time.Time{}, 0, err
	}
	for i := 0; i < 500 && target.Live() > 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	c := st.Counts()
	tc := target.Counts()
	last := c.LastGone
	if tc.LastGone.After(last) {
		last = tc.LastGone
	}
	return c, sink, last, last.Sub(closeAt), nil
}

func stormChild(mode string) (*stormMetrics, error) {
	m := &stormMetrics{Conns: stormBenchConns}
	switch mode {
	case "hold":
		// Warm up: fault in code, stacks and the first table chunks.
		if _, _, _, _, err := runBenchStorm(200, workload.ClientHalfClose, 0, 0, nil); err != nil {
			return nil, err
		}
		runtime.GC()
		debug.FreeOSMemory()
		rss0, err := vmRSS()
		if err != nil {
			return nil, err
		}
		heap0 := heapInUse()
		c, _, _, _, err := runBenchStorm(stormBenchConns, workload.CloseWaitLeak, 2*time.Second, 0, func(phase string) {
			rss, _ := vmRSS()
			per := float64(rss-rss0) / stormBenchConns
			switch phase {
			case "open":
				m.RSSOpenB = per
				m.HeapB = float64(heapInUse()-heap0) / stormBenchConns
			case "halfclosed":
				m.RSSHalfClosedB = per
			}
		})
		if err != nil {
			return nil, err
		}
		m.Closed, m.Failed, m.Unaccounted, m.HoldPeak = c.Closed, c.Failed, c.Unaccounted, c.HoldPeak
	case "drain":
		c, sink, _, ttl, err := runBenchStorm(stormBenchConns, workload.ClientHalfClose, 200*time.Millisecond, 0, nil)
		if err != nil {
			return nil, err
		}
		h := sink.Totals()[0][collector.PhaseDrain]
		p, err := results.Summarize(h)
		if err != nil {
			return nil, err
		}
		m.DrainP50, m.DrainP99, m.TimeToLast = p.P50, p.P99, int64(ttl)
		m.Closed, m.Failed, m.Unaccounted, m.HoldPeak = c.Closed, c.Failed, c.Unaccounted, c.HoldPeak
	default:
		return nil, fmt.Errorf("unknown mode %q", mode)
	}
	return m, nil
}

func runStormChild(b *testing.B, mode string) *stormMetrics {
	b.Helper()
	b.Setenv(stormChildEnv, mode)
	cmd := sysctl.IsolatedCommand(context.Background(), []string{"-test.run=^TestStormBenchChild$"})
	cmd.Stdout = nil
	cmd.Stderr = nil
	out, err := cmd.Output()
	if err != nil {
		if cmd.ProcessState == nil {
			b.Skipf("no isolation here: %v", sysctl.ExplainStart(err))
		}
		msg := ""
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			msg = string(ee.Stderr)
		}
		b.Fatalf("child: %v %s", err, msg)
	}
	var m stormMetrics
	if err := json.Unmarshal(out, &m); err != nil {
		b.Fatalf("child said %q: %v", out, err)
	}
	if m.Unaccounted != 0 || m.Failed != 0 || m.Closed != uint64(m.Conns) {
		b.Fatalf("storm not fully accounted: %+v", m)
	}
	return &m
}

func BenchmarkStormHold(b *testing.B) {
	var open, half, heap float64
	for b.Loop() {
		m := runStormChild(b, "hold")
		open += m.RSSOpenB
		half += m.RSSHalfClosedB
		heap += m.HeapB
	}
	n := float64(b.N)
	b.ReportMetric(max(open, half)/n, "B/conn")
	b.ReportMetric(open/n, "rss-open-B/conn")
	b.ReportMetric(half/n, "rss-halfclosed-B/conn")
	b.ReportMetric(heap/n, "heap-B/conn")
}

func BenchmarkStormDrain(b *testing.B) {
	var p50, p99, ttl float64
	for b.Loop() {
		m := runStormChild(b, "drain")
		p50 += float64(m.DrainP50)
		p99 += float64(m.DrainP99)
		ttl += float64(m.TimeToLast)
	}
	n := float64(b.N)
	b.ReportMetric(p50/n/1e6, "drain-p50-ms")
	b.ReportMetric(p99/n/1e6, "drain-p99-ms")
	b.ReportMetric(ttl/n/1e6, "ms-to-last-close")
}
