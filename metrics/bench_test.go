package metrics_test

import (
	"math/rand/v2"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/metrics"
	"github.com/closeload/closeload/workload"
)

// benchSink is a latency sink holding n connections of scenarios with a
// spread of phase timings (20 µs .. 20 ms), as a long run leaves it.
func benchSink(scenarios, n int) *collector.LatencySink {
	sink := collector.NewLatencySink(scenarios)
	rec := sink.NewRecorder()
	r := rand.New(rand.NewPCG(1, 2))
	var tm collector.Timings
	for i := range n {
		for p := range tm {
			tm[p] = 20_000 + int64(r.ExpFloat64()*float64(200_000*(p+1)))
		}
		rec.Record(i%scenarios, &tm)
	}
	rec.Flush()
	return sink
}

// BenchmarkScrape is the cost of one scrape, paid by the scraping goroutine
// and never by the workers: copying the cumulative histograms out of the
// sink (under its lock, which a worker's flush of 64 connections also
// takes), converting them to buckets and encoding everything as text.
func BenchmarkScrape(b *testing.B) {
	const scenarios = 3
	sink := benchSink(scenarios, 300_000)
	counters, _ := collector.ReadCounters("")
	census := map[string]map[string]uint64{
		metrics.SideClient: {"ESTABLISHED": 40, "FIN_WAIT2": 10, "TIME_WAIT": 30000},
		metrics.SideTarget: {"LISTEN": 3, "CLOSE_WAIT": 5, "LAST_ACK": 2},
	}
	e := metrics.New("bench")
	e.SetProvider(func() metrics.Live {
		totals := sink.Totals()
		l := metrics.Live{States: census, Counters: counters}
		for i := range scenarios {
			c := workload.Counts{Attempts: 100_000, Cycles: 99_000, Sent: 1 << 20, Received: 1 << 20}
			s := metrics.FromCounts(workload.Scenario(i).String(), metrics.SideClient, c)
			s.Phases = totals[i]
			l.Scenarios = append(l.Scenarios, s, metrics.FromCounts(workload.Scenario(i).String(), metrics.SideTarget, c))
		}
		return l
	})
	h := e.Handler()
	b.ReportAllocs()
	var bytes int
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
		bytes = w.Body.Len()
	}
	b.ReportMetric(float64(bytes), "bytes/scrape")
}

// BenchmarkRecordWhileScraped is BenchmarkRecordPhases (benchmarks/) with a
// scraper copying the sink's histograms every 100 ms meanwhile: what a
// worker pays when its flush meets a scrape holding the sink's lock.
func BenchmarkRecordWhileScraped(b *testing.B) {
	sink := benchSink(1, 300_000)
	e := metrics.New("bench")
	e.SetProvider(func() metrics.Live {
		s := metrics.ScenarioLive{Scenario: "client-halfclose", Side: metrics.SideClient, Phases: sink.Totals()[0]}
		return metrics.Live{Scenarios: []metrics.ScenarioLive{s}}
	})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				_, _ = e.Gatherer().Gather()
			}
		}
	}()
	rec := sink.NewRecorder()
	tm := collector.Timings{18_000, 190_000, 180_000, 240_000}
	b.ReportAllocs()
	i := int64(0)
	for b.Loop() {
		i++
		tm[collector.PhaseTotal] = 240_000 + i%4096
		rec.Record(0, &tm)
	}
	b.StopTimer()
	close(stop)
	<-done
}
