package report

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/closeload/closeload/results"
)

// The fixture records in testdata/runs are generated, deterministically,
// by TestGenerateFixtures -fixtures; they are committed so that goldens do
// not depend on the Go version's compressor. Regenerate them only when the
// record schema changes, then regenerate the goldens with -update.
var regenFixtures = flag.Bool("fixtures", false, "regenerate the fixture records in testdata/runs")

var fixtureT0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

// latModel is a phase's latency: log-normal around a median.
type latModel struct {
	median float64 // ns
	sigma  float64
	// slowFrac of the values come from a slow mode slowMul times the median.
	slowFrac, slowMul float64
}

// scenarioModel is what one scenario of a fixture run does.
type scenarioModel struct {
	name   string
	weight int
	// rate per second of each interval, before jitter.
	rate   func(sec int) float64
	errors map[string]func(sec int) float64
	phases map[string]latModel
}

// runModel is a fixture run's workload and kernel behaviour.
type runModel struct {
	id, matrix, variant string
	repeat              int
	start               time.Time
	seconds             int
	cfg                 results.Config
	applied             map[string]string
	scenarios           []scenarioModel
	// states gives the socket states at the end of second sec, given the
	// cumulative cycles per scenario so far.
	states func(sec int, cum map[string]float64) map[string]results.StateCount
	// counters gives kernel counter deltas over second sec given its cycles.
	counters func(sec int, cycles map[string]float64, rng *rand.Rand) map[string]int64
	shard    *results.Shard
	host     string
	storm    *results.StormResult
	held     func(sec int) uint64
}

var errExamples = map[string]string{
	"addr-not-available": "dial tcp 127.0.0.1:0->127.0.0.1:9000: connect: cannot assign requested address",
	"reset":              "read tcp 127.0.0.1:41234->127.0.0.1:9000: read: connection reset by peer",
	"refused":            "dial tcp 127.0.0.1:9000: connect: connection refused",
	"timeout":            "read tcp 127.0.0.1:41234->127.0.0.1:9000: i/o timeout",
}

// buildRun turns a model into a record with real HdrHistograms. The same
// seed gives the same record.
func buildRun(t testing.TB, m runModel, seed uint64) *results.Run {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	jitter := func(v, rel float64) float64 { return math.Max(0, v*(1+rel*rng.NormFloat64())) }
	r := &results.Run{
		Schema: results.SchemaVersion, ID: m.id, Shard: m.shard, Matrix: m.matrix, Variant: m.variant, Repeat: m.repeat,
		Provenance: results.Provenance{
			Tool: "closeload", Version: "v0.1.0", GoVersion: "go1.26.8", Kernel: "6.18.0-closeload", Hostname: m.host,
			Cores: 2, GOMAXPROCS: 2, Namespace: "isolated", PID: 4000 + int(seed%1000),
			Args: []string{"closeload", "run", "--duration", fmt.Sprint(time.Duration(m.seconds) * time.Second)},
		},
		Config: m.cfg,
		Sysctls: results.Sysctls{
			Applied: m.applied,
			Before:  map[string]string{"net.ipv4.tcp_tw_reuse": "2", "net.ipv4.tcp_fin_timeout": "60", "net.ipv4.ip_local_port_range": "32768\t60999"},
			Mode:    "isolated",
		},
		Start: m.start, End: m.start.Add(time.Duration(m.seconds)*time.Second + m.cfg.Warmup),
		MeasuredSeconds: float64(m.seconds),
	}
	r.Sysctls.After = map[string]string{}
	for k, v := range r.Sysctls.Before {
		r.Sysctls.After[k] = v
	}
	for k, v := range m.applied {
		r.Sysctls.After[k] = v
	}
	cum := map[string]float64{}
	type scAcc struct {
		cycles float64
		errs   map[string]float64
	}
	accs := make([]scAcc, len(m.scenarios))
	for i := range accs {
		accs[i].errs = map[string]float64{}
	}
	totalCounters := map[string]int64{}
	var counterOrder []string
	for sec := 1; sec <= m.seconds; sec++ {
		smp := results.Sample{T: m.start.Add(m.cfg.Warmup + time.Duration(sec)*time.Second), Elapsed: float64(sec)}
		cycles := map[string]float64{}
		for i, sc := range m.scenarios {
			c := math.Round(jitter(sc.rate(sec), 0.02))
			cycles[sc.name] = c
			cum[sc.name] += c
			accs[i].cycles += c
			smp.Cycles += uint64(c)
			for _, class := range sortedKeys(sc.errors) {
				e := math.Round(jitter(sc.errors[class](sec), 0.05))
				accs[i].errs[class] += e
				smp.Errors += uint64(e)
			}
		}
		smp.Attempts = smp.Cycles + smp.Errors
		smp.States = m.states(sec, cum)
		smp.Counters = m.counters(sec, cycles, rng)
		for name, v := range smp.Counters {
			if _, ok := totalCounters[name]; !ok {
				counterOrder = append(counterOrder, name)
			}
			totalCounters[name] += v
		}
		if m.held != nil {
			smp.Held = m.held(sec)
		}
		r.Series = append(r.Series, smp)
	}
	sortStrings(counterOrder)
	for _, name := range counterOrder {
		r.Counters = append(r.Counters, results.CounterDelta{Name: name, Delta: totalCounters[name], Scope: "netns"})
	}
	r.Peaks = peaksOf(r.Series)
	for i, sc := range m.scenarios {
		a := accs[i]
		res := results.ScenarioResult{Name: sc.name, Weight: sc.weight, Cycles: uint64(a.cycles), Rate: a.cycles / float64(m.seconds),
			Phases: map[string]results.Phase{}}
		res.Attempts = res.Cycles
		for class, n := range a.errs {
			if n == 0 {
				continue
			}
			if res.Errors == nil {
				res.Errors = map[string]results.ErrorCount{}
			}
			res.Errors[class] = results.ErrorCount{Count: uint64(n), Example: errExamples[class]}
			res.Attempts += uint64(n)
		}
		for _, phase := range knownPhases {
			lm, ok := sc.phases[phase]
			if !ok {
				continue
			}
			h := results.NewHistogram()
			for j := 0; j < int(a.cycles); j++ {
				v := lm.median * math.Exp(lm.sigma*rng.NormFloat64())
				if rng.Float64() < lm.slowFrac {
					v *= lm.slowMul
				}
				if err := h.RecordValue(int64(math.Max(1, v))); err != nil {
					t.Fatal(err)
				}
			}
			p, err := results.Summarize(h)
			if err != nil {
				t.Fatal(err)
			}
			res.Phases[phase] = p
		}
		res.Bytes = results.Bytes{Sent: res.Cycles * uint64(m.cfg.RequestSize), Received: res.Cycles * uint64(m.cfg.ResponseSize)}
		res.Observed = results.Observed{EOF: res.Cycles, Reset: uint64(a.errs["reset"])}
		r.Scenarios = append(r.Scenarios, res)
		r.Totals.Cycles += res.Cycles
		r.Totals.Attempts += res.Attempts
		r.Totals.Rate += res.Rate
		r.Totals.Bytes.Sent += res.Bytes.Sent
		r.Totals.Bytes.Received += res.Bytes.Received
		for class, e := range res.Errors {
			if r.Totals.Errors == nil {
				r.Totals.Errors = map[string]results.ErrorCount{}
			}
			te := r.Totals.Errors[class]
			te.Count += e.Count
			te.Example = e.Example
			r.Totals.Errors[class] = te
		}
	}
	r.Collector = &results.CollectorHealth{Source: "sock_diag", Samples: m.seconds, MeanCostNs: 1_200_000 + int64(seed%7)*10_000, MaxCostNs: 3_100_000}
	r.Storm = m.storm
	return r
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// portRange is the default ephemeral range 32768..60999.
const portRange = 28232

func baseConfig() results.Config {
	return results.Config{
		BuiltinTarget: true, Shape: "closed", Conns: 64, Duration: 10 * time.Second, Warmup: time.Second,
		RequestSize: 64, ResponseSize: 256, Timeout: 5 * time.Second, Interval: time.Second,
		Mix: []results.MixEntry{{Scenario: "client-halfclose", Weight: 100}},
	}
}

// twReuseModel: client-halfclose from one source address, 64 workers. With
// tcp_tw_reuse=0 the ephemeral ports are all in TIME_WAIT after 2 s and
// connect() fails with EADDRNOTAVAIL; with 1 TIME_WAIT ports are reused
// (TWRecycled) and the rate holds at about 14.5k/s.
func twReuseModel(reuse bool, repeat int, start time.Time) runModel {
	v := "0"
	if reuse {
		v = "1"
	}
	m := runModel{
		id: fmt.Sprintf("20260301T1000-tw%s-r%d", v, repeat), matrix: "m-tw-reuse", variant: "net.ipv4.tcp_tw_reuse=" + v, repeat: repeat,
		start: start, seconds: 10, cfg: baseConfig(), applied: map[string]string{"net.ipv4.tcp_tw_reuse": v}, host: "bench-1",
	}
	m.cfg.Sources = []string{"127.0.0.2"}
	rate := func(sec int) float64 {
		if reuse || sec <= 1 {
			return 14_500
		}
		if sec == 2 {
			return portRange - 14_500
		}
		return 40
	}
	errs := map[string]func(int) float64{"reset": func(int) float64 { return 2 }}
	if !reuse {
		errs["addr-not-available"] = func(sec int) float64 {
			if sec <= 2 {
				return 0
			}
			return 8_700
		}
	}
	lat := map[string]latModel{
		"connect":    {median: 950_000, sigma: 0.5, slowFrac: 0.01, slowMul: 8},
		"first_byte": {median: 1_250_000, sigma: 0.45},
		"drain":      {median: 1_020_000, sigma: 0.45},
		"total":      {median: 4_300_000, sigma: 0.35, slowFrac: 0.01, slowMul: 4},
	}
	if !reuse {
		// The few connects that succeed once ports run out searched the
		// whole range first.
		lat["connect"] = latModel{median: 1_050_000, sigma: 0.6, slowFrac: 0.03, slowMul: 40}
		lat["total"] = latModel{median: 4_500_000, sigma: 0.4, slowFrac: 0.03, slowMul: 12}
	}
	m.scenarios = []scenarioModel{{name: "client-halfclose", weight: 100, rate: rate, errors: errs, phases: lat}}
	m.states = func(sec int, cum map[string]float64) map[string]results.StateCount {
		tw := math.Min(cum["client-halfclose"], portRange-40)
		return map[string]results.StateCount{
			"TIME_WAIT":   {Total: uint64(tw)},
			"ESTABLISHED": {Total: 2 * 60},
			"FIN_WAIT2":   {Total: 9},
			"CLOSE_WAIT":  {Total: 7},
			"LAST_ACK":    {Total: 3},
		}
	}
	var cumCycles float64
	m.counters = func(sec int, cycles map[string]float64, rng *rand.Rand) map[string]int64 {
		c := cycles["client-halfclose"]
		prev := cumCycles
		cumCycles += c
		out := map[string]int64{
			"TcpExt.TW":              0,
			"TcpExt.TWRecycled":      0,
			"Tcp.OutRsts":            int64(c*0.003 + 2*rng.Float64()),
			"TcpExt.TCPAbortOnClose": int64(3 * rng.Float64()),
			"TcpExt.TCPAbortOnData":  0,
			"TcpExt.ListenOverflows": 0,
			"Tcp.ActiveOpens":        int64(c),
		}
		if reuse && cumCycles > portRange {
			out["TcpExt.TWRecycled"] = int64(cumCycles - math.Max(prev, portRange))
		}
		return out
	}
	return m
}

// finTimeoutModel: 70% client-halfclose, 30% orphan-finwait2 against a
// target that holds for 20 s. tcp_fin_timeout reaps the client's orphaned
// FIN_WAIT_2 after that many seconds; the target's CLOSE_WAIT is unchanged.
func finTimeoutModel(timeout int, repeat int, start time.Time) runModel {
	m := runModel{
		id: fmt.Sprintf("20260301T1100-fin%d-r%d", timeout, repeat), matrix: "m-fin-timeout", variant: fmt.Sprintf("net.ipv4.tcp_fin_timeout=%d", timeout),
		repeat: repeat, start: start, seconds: 10, cfg: baseConfig(), host: "bench-1",
		applied: map[string]string{"net.ipv4.tcp_fin_timeout": fmt.Sprint(timeout), "net.ipv4.tcp_tw_reuse": "1"},
	}
	m.cfg.Conns = 16
	m.cfg.Hold = 20 * time.Second
	m.cfg.Sources = []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}
	m.cfg.Mix = []results.MixEntry{{Scenario: "client-halfclose", Weight: 70}, {Scenario: "orphan-finwait2", Weight: 30}}
	m.scenarios = []scenarioModel{
		{name: "client-halfclose", weight: 70, rate: func(int) float64 { return 2_800 }, errors: map[string]func(int) float64{},
			phases: map[string]latModel{
				"connect": {median: 210_000, sigma: 0.5}, "first_byte": {median: 380_000, sigma: 0.5},
				"drain": {median: 330_000, sigma: 0.5}, "total": {median: 1_400_000, sigma: 0.4},
			}},
		{name: "orphan-finwait2", weight: 30, rate: func(int) float64 { return 1_200 }, errors: map[string]func(int) float64{},
			phases: map[string]latModel{"connect": {median: 220_000, sigma: 0.5}, "total": {median: 480_000, sigma: 0.5}}},
	}
	m.states = func(sec int, cum map[string]float64) map[string]results.StateCount {
		orphans := cum["orphan-finwait2"]
		if sec > timeout {
			orphans = 1_200 * float64(timeout)
		}
		return map[string]results.StateCount{
			"TIME_WAIT":   {Total: uint64(math.Min(cum["client-halfclose"], 4*portRange))},
			"FIN_WAIT2":   {Total: uint64(orphans) + 4, Orphaned: uint64(orphans)},
			"CLOSE_WAIT":  {Total: uint64(cum["orphan-finwait2"])},
			"ESTABLISHED": {Total: 32},
		}
	}
	m.counters = func(sec int, cycles map[string]float64, rng *rand.Rand) map[string]int64 {
		return map[string]int64{
			"TcpExt.TW":              0,
			"TcpExt.TWRecycled":      0,
			"Tcp.OutRsts":            int64(cycles["client-halfclose"]*0.003 + 2*rng.Float64()),
			"TcpExt.TCPAbortOnClose": int64(2 * rng.Float64()),
		}
	}
	return m
}

// stormShardModel: one shard of a 3-shard storm of 30000 connections held
// and closed within 2 s, on host node-<shard>.
func stormShardModel(shard int, start time.Time) runModel {
	n := results.ShardSlice(30_000, shard, 3)
	m := runModel{
		id: "20260301T1200-storm", start: start.Add(time.Duration(shard) * 30 * time.Millisecond), seconds: 6, cfg: baseConfig(),
		applied: map[string]string{"net.ipv4.tcp_tw_reuse": "1"}, shard: &results.Shard{Index: shard, Count: 3},
		host: fmt.Sprintf("node-%c", 'a'+shard),
	}
	m.cfg.Shape = "storm"
	m.cfg.Storm = n
	m.cfg.Conns = n
	m.cfg.StormWindow = 2 * time.Second
	m.cfg.Hold = 3 * time.Second
	m.cfg.Mix = []results.MixEntry{{Scenario: "client-halfclose", Weight: 100}}
	m.scenarios = []scenarioModel{{name: "client-halfclose", weight: 100,
		rate: func(sec int) float64 {
			if sec == 4 || sec == 5 {
				return float64(n / 2)
			}
			return 0
		},
		errors: map[string]func(int) float64{"timeout": func(sec int) float64 {
			if sec == 5 {
				return 3
			}
			return 0
		}},
		phases: map[string]latModel{
			"connect": {median: 90_000, sigma: 0.6}, "first_byte": {median: 3_000_000_000, sigma: 0.05},
			"drain": {median: 2_000_000, sigma: 0.8, slowFrac: 0.02, slowMul: 20}, "total": {median: 3_900_000_000, sigma: 0.1},
		}}}
	held := func(sec int) uint64 {
		switch {
		case sec <= 3:
			return uint64(n)
		case sec == 4:
			return uint64(n / 2)
		}
		return 0
	}
	m.held = held
	m.states = func(sec int, cum map[string]float64) map[string]results.StateCount {
		return map[string]results.StateCount{
			"ESTABLISHED": {Total: 2 * held(sec)},
			"TIME_WAIT":   {Total: uint64(cum["client-halfclose"])},
			"FIN_WAIT2":   {Total: uint64(40 * (sec % 2))},
			"CLOSE_WAIT":  {Total: uint64(40 * (sec % 2))},
		}
	}
	m.counters = func(sec int, cycles map[string]float64, rng *rand.Rand) map[string]int64 {
		return map[string]int64{"TcpExt.TW": 0, "Tcp.OutRsts": int64(cycles["client-halfclose"] * 0.003), "TcpExt.TCPAbortOnClose": 0}
	}
	m.storm = &results.StormResult{Opened: uint64(n), Closed: uint64(n - 3), Failed: 3, HoldPeak: uint64(n), TimeToLastClose: int64(1_900+shard*37) * int64(time.Millisecond)}
	return m
}

// fixtureRuns builds every fixture record, by path under testdata/runs.
func fixtureRuns(t testing.TB) map[string]*results.Run {
	out := map[string]*results.Run{}
	start := fixtureT0
	seed := uint64(1)
	for _, reuse := range []bool{false, true} {
		for rep := range 3 {
			m := twReuseModel(reuse, rep, start)
			out[filepath.Join("tw-reuse", m.id+".json")] = buildRun(t, m, seed)
			start = start.Add(15 * time.Second)
			seed++
		}
	}
	start = fixtureT0.Add(time.Hour)
	for _, timeout := range []int{60, 5} {
		for rep := range 5 {
			m := finTimeoutModel(timeout, rep, start)
			out[filepath.Join("fin-timeout", m.id+".json")] = buildRun(t, m, seed)
			start = start.Add(15 * time.Second)
			seed++
		}
	}
	start = fixtureT0.Add(2 * time.Hour)
	for _, shard := range []int{0, 2} {
		m := stormShardModel(shard, start)
		out[filepath.Join("sharded", fmt.Sprintf("storm-shard%d.json", shard))] = buildRun(t, m, seed)
		seed++
	}
	return out
}

func TestGenerateFixtures(t *testing.T) {
	if !*regenFixtures {
		t.Skip("run with -fixtures to regenerate testdata/runs")
	}
	root := filepath.Join("testdata", "runs")
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	for path, r := range fixtureRuns(t) {
		if err := results.Write(filepath.Join(root, path), r); err != nil {
			t.Fatal(err)
		}
	}
	// A damaged record (cut short) and a file of another tool beside the
	// shards: the first is named and skipped, the second ignored.
	data, err := os.ReadFile(filepath.Join(root, "sharded", "storm-shard0.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "sharded", "storm-shard1.json"), data[:len(data)/3], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "sharded", "manifest.json"), []byte(`{"matrix": "none", "note": "not a record"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The matrix's own index.json has a schema but no id: not a record.
	index := `{"schema": 1, "matrix": "m-tw-reuse", "mode": "isolated", "repeat": 3, "variants": [], "runs": []}` + "\n"
	if err := os.WriteFile(filepath.Join(root, "tw-reuse", "index.json"), []byte(index), 0o644); err != nil {
		t.Fatal(err)
	}
}
