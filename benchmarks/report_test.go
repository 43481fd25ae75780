package benchmarks

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/closeload/closeload/report"
	"github.com/closeload/closeload/results"
)

// The report's speed goal: reporting 100 records of 600 samples each takes
// less than 2 s, reading the files included.
//
//	go test ./benchmarks -run '^$' -bench Report -benchtime 3x

const (
	reportRecords  = 100
	reportSamples  = 600
	reportVariants = 4
)

// reportCounters are the kernel counters a real record carries per sample.
var reportCounters = []string{
	"TcpExt.TW", "TcpExt.TWRecycled", "TcpExt.TWKilled", "TcpExt.TCPTimeWaitOverflow", "TcpExt.TCPAbortOnClose",
	"TcpExt.TCPAbortOnData", "TcpExt.TCPAbortOnMemory", "TcpExt.TCPAbortOnTimeout", "TcpExt.ListenOverflows",
	"TcpExt.ListenDrops", "Tcp.OutRsts", "Tcp.EstabResets", "Tcp.ActiveOpens", "Tcp.PassiveOpens", "Tcp.AttemptFails",
	"Tcp.CurrEstab", "Tcp.InSegs", "Tcp.OutSegs", "Tcp.RetransSegs", "TcpExt.TCPOrphanQueued",
	"Sockstat.TCP.inuse", "Sockstat.TCP.orphan", "Sockstat.TCP.tw", "Sockstat.TCP.alloc", "Sockstat.TCP.mem",
}

var reportStates = []string{"ESTABLISHED", "TIME_WAIT", "FIN_WAIT2", "CLOSE_WAIT", "FIN_WAIT1", "LAST_ACK"}

// benchHistograms are a few real encodings, shared by the records: the cost
// of decoding depends on the encoding, not on which record holds it.
func benchHistograms(b *testing.B, n int) []results.Phase {
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([]results.Phase, n)
	for i := range out {
		h := results.NewHistogram()
		median := 50_000 * float64(i+1)
		for range 50_000 {
			if err := h.RecordValue(int64(median * math.Exp(0.6*rng.NormFloat64()))); err != nil {
				b.Fatal(err)
			}
		}
		p, err := results.Summarize(h)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = p
	}
	return out
}

// writeReportRecords writes reportRecords records of a 3-scenario mix,
// reportVariants variants of tcp_tw_reuse × repeats, into dir.
func writeReportRecords(b *testing.B, dir string) {
	hists := benchHistograms(b, 12)
	rng := rand.New(rand.NewPCG(3, 4))
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	scenarios := []string{"client-halfclose", "linger0", "unread-close"}
	phases := []string{"connect", "first_byte", "drain", "total"}
	for i := range reportRecords {
		v := i % reportVariants
		start := t0.Add(time.Duration(i) * 11 * time.Minute)
		r := &results.Run{
			Schema: results.SchemaVersion, ID: fmt.Sprintf("bench-%03d", i), Matrix: "bench", Repeat: i / reportVariants,
			Variant:    fmt.Sprintf("net.ipv4.tcp_fin_timeout=%d", 15*(v+1)),
			Provenance: results.Provenance{Tool: "closeload", Version: "bench", Kernel: "6.18.0", Hostname: "bench", Cores: 2, GOMAXPROCS: 2, Namespace: "isolated"},
			Config: results.Config{Shape: "closed", Conns: 64, Duration: 10 * time.Minute, Interval: time.Second, BuiltinTarget: true,
				Mix: []results.MixEntry{{Scenario: scenarios[0], Weight: 70}, {Scenario: scenarios[1], Weight: 20}, {Scenario: scenarios[2], Weight: 10}}},
			Sysctls:         results.Sysctls{Applied: map[string]string{"net.ipv4.tcp_fin_timeout": fmt.Sprint(15 * (v + 1))}, Mode: "isolated"},
			Start:           start,
			End:             start.Add(10 * time.Minute),
			MeasuredSeconds: 600,
			Peaks:           map[string]results.StateCount{},
		}
		for si, name := range scenarios {
			sc := results.ScenarioResult{Name: name, Cycles: uint64(1e6 + rng.IntN(1e5)), Phases: map[string]results.Phase{},
				Errors: map[string]results.ErrorCount{"reset": {Count: uint64(rng.IntN(100)), Example: "connection reset by peer"}}}
			sc.Rate = float64(sc.Cycles) / 600
			for pi, ph := range phases {
				sc.Phases[ph] = hists[(si*len(phases)+pi+v)%len(hists)]
			}
			r.Scenarios = append(r.Scenarios, sc)
			r.Totals.Cycles += sc.Cycles
			r.Totals.Rate += sc.Rate
		}
		for _, c := range reportCounters {
			r.Counters = append(r.Counters, results.CounterDelta{Name: c, Delta: int64(rng.IntN(1e6)), Scope: "netns"})
		}
		for s := range reportSamples {
			smp := results.Sample{T: start.Add(time.Duration(s+1) * time.Second), Elapsed: float64(s + 1),
				States: map[string]results.StateCount{}, Counters: map[string]int64{}, Cycles: uint64(5000 + rng.IntN(500))}
			for _, st := range reportStates {
				smp.States[st] = results.StateCount{Total: uint64(rng.IntN(30_000))}
				if smp.States[st].Total > r.Peaks[st].Total {
					r.Peaks[st] = smp.States[st]
				}
			}
			for _, c := range reportCounters {
				smp.Counters[c] = int64(rng.IntN(10_000))
			}
			r.Series = append(r.Series, smp)
		}
		if err := results.Write(filepath.Join(dir, r.ID+".json"), r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReport reads, groups, compares and prints 100 records of 600
// samples each: what `closeload report DIR` does for the text format.
func BenchmarkReport(b *testing.B) {
	dir := b.TempDir()
	writeReportRecords(b, dir)
	b.ResetTimer()
	for b.Loop() {
		in, _, err := report.Load([]string{dir})
		if err != nil {
			b.Fatal(err)
		}
		if len(in) != reportRecords {
			b.Fatalf("loaded %d records", len(in))
		}
		c, err := report.CompareInputs(in, report.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := c.WriteText(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/report")
}

// BenchmarkReportHTML adds the plots and the HTML page to BenchmarkReport.
func BenchmarkReportHTML(b *testing.B) {
	dir := b.TempDir()
	writeReportRecords(b, dir)
	out := b.TempDir()
	b.ResetTimer()
	for b.Loop() {
		in, _, err := report.Load([]string{dir})
		if err != nil {
			b.Fatal(err)
		}
		c, err := report.CompareInputs(in, report.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := report.WriteHTML(out, c, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/report")
	if st, err := os.Stat(filepath.Join(out, "index.html")); err == nil {
		b.ReportMetric(float64(st.Size()), "html-bytes")
	}
}

// largeSamples makes one record of about 200 MB, the size of a long run
// sampled finely.
const largeSamples = 300_000

// BenchmarkReportLargeRecord plots and pages two variants of one record
// each with largeSamples samples: the series is reduced before it is drawn,
// so this takes seconds (reading the JSON is most of it), not minutes.
//
//	go test ./benchmarks -run '^$' -bench ReportLargeRecord -benchtime 1x
func BenchmarkReportLargeRecord(b *testing.B) {
	dir := b.TempDir()
	hists := benchHistograms(b, 4)
	rng := rand.New(rand.NewPCG(5, 6))
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var bytes int64
	for v := range 2 {
		start := t0.Add(time.Duration(v) * 100 * time.Hour)
		r := &results.Run{
			Schema: results.SchemaVersion, ID: fmt.Sprintf("large-%d", v), Variant: fmt.Sprintf("net.ipv4.tcp_tw_reuse=%d", v),
			Provenance: results.Provenance{Tool: "closeload", Version: "bench", Kernel: "6.18.0", Hostname: "bench", Cores: 2, GOMAXPROCS: 2, Namespace: "isolated"},
			Config: results.Config{Shape: "closed", Conns: 64, Duration: largeSamples * 100 * time.Millisecond, Interval: 100 * time.Millisecond,
				BuiltinTarget: true, Mix: []results.MixEntry{{Scenario: "client-halfclose", Weight: 1}}},
			Sysctls: results.Sysctls{Applied: map[string]string{"net.ipv4.tcp_tw_reuse": fmt.Sprint(v)}, Mode: "isolated"},
			Start:   start, End: start.Add(largeSamples * 100 * time.Millisecond), MeasuredSeconds: largeSamples / 10,
			Peaks: map[string]results.StateCount{},
		}
		sc := results.ScenarioResult{Name: "client-halfclose", Cycles: 1e8, Phases: map[string]results.Phase{}}
		for pi, ph := range []string{"connect", "first_byte", "drain", "total"} {
			sc.Phases[ph] = hists[pi]
		}
		r.Scenarios = []results.ScenarioResult{sc}
		r.Series = make([]results.Sample, largeSamples)
		for s := range r.Series {
			smp := results.Sample{T: start.Add(time.Duration(s+1) * 100 * time.Millisecond), Elapsed: float64(s+1) / 10,
				States: map[string]results.StateCount{}, Counters: map[string]int64{}, Cycles: uint64(500 + rng.IntN(50))}
			for _, st := range reportStates {
				smp.States[st] = results.StateCount{Total: uint64(rng.IntN(30_000))}
				if smp.States[st].Total > r.Peaks[st].Total {
					r.Peaks[st] = smp.States[st]
				}
			}
			for _, c := range reportCounters[:12] {
				smp.Counters[c] = int64(rng.IntN(10_000))
			}
			r.Series[s] = smp
		}
		path := filepath.Join(dir, r.ID+".json")
		if err := results.Write(path, r); err != nil {
			b.Fatal(err)
		}
		if st, err := os.Stat(path); err == nil {
			bytes += st.Size()
		}
	}
	out := b.TempDir()
	var page time.Duration
	b.ResetTimer()
	for b.Loop() {
		in, _, err := report.Load([]string{dir})
		if err != nil {
			b.Fatal(err)
		}
		c, err := report.CompareInputs(in, report.Options{})
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if err := report.WriteHTML(out, c, nil); err != nil {
			b.Fatal(err)
		}
		page += time.Since(t0)
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/report")
	b.ReportMetric(page.Seconds()/float64(b.N), "s/plots+page")
	b.ReportMetric(float64(bytes)/2/1e6, "MB/record")
}
