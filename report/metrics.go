package report

import (
	"math"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/closeload/closeload/results"
)

// Known names, in the order a kernel engineer reads them.
var (
	knownPhases = []string{"connect", "first_byte", "drain", "total"}
	// knownErrors are the workload's error classes.
	knownErrors = []string{"refused", "reset", "timeout", "addr-not-available", "too-many-files", "broken-pipe", "data-mismatch", "other"}
	// portExhaustion is the workload's error class for no free local port.
	portExhaustion = "addr-not-available"
	// mainStates are always shown; the other states only when non-zero.
	mainStates  = []string{"TIME_WAIT", "FIN_WAIT2", "CLOSE_WAIT"}
	otherStates = []string{"FIN_WAIT1", "CLOSING", "LAST_ACK", "SYN_SENT", "SYN_RECV", "ESTABLISHED"}
	// closeCounters are the close-related kernel counters, in this order.
	closeCounters = []string{
		"TcpExt.TW", "TcpExt.TWRecycled", "TcpExt.TWKilled", "TcpExt.TCPTimeWaitOverflow",
		"TcpExt.TCPAbortOnClose", "TcpExt.TCPAbortOnData", "TcpExt.TCPAbortOnLinger", "TcpExt.TCPAbortOnTimeout",
		"TcpExt.TCPAbortOnMemory", "TcpExt.TCPAbortFailed", "Tcp.OutRsts", "Tcp.EstabResets",
		"Tcp.AttemptFails", "TcpExt.ListenOverflows", "TcpExt.ListenDrops", "TcpExt.TCPOrphanQueued",
	}
	// closeCounterPattern admits other counters that speak of closing.
	closeCounterPattern = regexp.MustCompile(`TW|Abort|Orphan|Rst|Reset|Listen|TimeWait|FinWait|Close`)
	// percentiles shown per phase.
	shownPercentiles = []struct {
		name  string
		get   func(p results.Phase) int64
		bench string
	}{
		{"p50", func(p results.Phase) int64 { return p.P50 }, "p50"},
		{"p99", func(p results.Phase) int64 { return p.P99 }, "p99"},
		{"p99.9", func(p results.Phase) int64 { return p.P999 }, "p99.9"},
	}
)

// Row kinds decide what an absent value means: a count absent from a record
// is zero; a latency absent is unknown.
const (
	kindRate = iota
	kindLatency
	kindCount
)

// metricDef is a row before it has cells.
type metricDef struct {
	metric, unit, bench string
	better, kind        int
	order               float64
	// hideZero drops the row when every value of every variant is zero.
	hideZero bool
}

// valueSet collects, per table and metric, one value per repeat per variant.
type valueSet struct {
	tables []string
	rows   map[string]map[string]*rowAcc // table → metric → acc
}

type rowAcc struct {
	def  metricDef
	seq  int
	vals [][]float64 // variant → repeat → value (NaN: absent)
}

func (vs *valueSet) set(table string, d metricDef, variant, repeat, nVariants, nRepeats int, v float64) {
	if vs.rows[table] == nil {
		vs.rows[table] = map[string]*rowAcc{}
		vs.tables = append(vs.tables, table)
	}
	acc := vs.rows[table][d.metric]
	if acc == nil {
		acc = &rowAcc{def: d, seq: len(vs.rows[table]), vals: make([][]float64, nVariants)}
		vs.rows[table][d.metric] = acc
	}
	if acc.vals[variant] == nil {
		acc.vals[variant] = make([]float64, nRepeats)
		for i := range acc.vals[variant] {
			acc.vals[variant][i] = math.NaN()
		}
	}
	acc.vals[variant][repeat] = v
}

// buildTables extracts every metric of every run and compares variants.
func buildTables(groups []*variantGroup, base int, opts Options, warn func(error)) []Table {
	vs := &valueSet{rows: map[string]map[string]*rowAcc{}}
	scenarios := scenarioOrder(groups)
	single := len(scenarios) == 1
	runTable := "all"
	if single {
		runTable = scenarios[0]
	}
	for _, sc := range scenarios {
		vs.rows[sc] = map[string]*rowAcc{}
		vs.tables = append(vs.tables, sc)
	}
	for gi, g := range groups {
		for ri, r := range g.runs {
			set := func(table string, d metricDef, v float64) {
				vs.set(table, d, gi, ri, len(groups), len(g.runs), v)
			}
			for _, sc := range r.Scenarios {
				scenarioMetrics(sc, r.MeasuredSeconds, func(d metricDef, v float64) { set(sc.Name, d, v) })
			}
			if r.KernelEvents != nil {
				for _, eg := range r.KernelEvents.Groups {
					if _, ok := vs.rows[eg.Scenario]; ok {
						dwellMetrics(eg, func(d metricDef, v float64) { set(eg.Scenario, d, v) })
					}
				}
			}
			runMetrics(r, !single, func(d metricDef, v float64) { set(runTable, d, v) })
		}
	}
	tables := make([]Table, 0, len(vs.tables))
	var work []*rowAcc
	var slots [][2]int // table, row of each work item
	for _, name := range vs.tables {
		accs := make([]*rowAcc, 0, len(vs.rows[name]))
		for _, a := range vs.rows[name] {
			accs = append(accs, a)
		}
		sort.Slice(accs, func(i, j int) bool {
			if accs[i].def.order != accs[j].def.order {
				return accs[i].def.order < accs[j].def.order
			}
			return accs[i].def.metric < accs[j].def.metric
		})
		t := Table{Scenario: name}
		for _, a := range accs {
			fillAbsent(a, groups)
			if a.def.hideZero && allZero(a.vals) {
				continue
			}
			slots = append(slots, [2]int{len(tables), len(t.Rows)})
			work = append(work, a)
			t.Rows = append(t.Rows, Row{})
		}
		tables = append(tables, t)
	}
	// The exact U distribution with many repeats costs milliseconds per
	// row; rows are independent, so they are compared in parallel.
	var mu sync.Mutex
	var errs []error
	safeWarn := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(runtime.GOMAXPROCS(0), max(1, len(work))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				tables[slots[i][0]].Rows[slots[i][1]] = compareRow(work[i], base, opts, safeWarn)
			}
		}()
	}
	for i := range work {
		next <- i
	}
	close(next)
	wg.Wait()
	// Warnings in a stable order, whatever the workers' order was.
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	for _, err := range errs {
		warn(err)
	}
	out := tables[:0]
	for _, t := range tables {
		if len(t.Rows) > 0 {
			out = append(out, t)
		}
	}
	return out
}

// fillAbsent turns absent counts into zeros: a record without an error
// class had none of it. Latencies stay absent.
func fillAbsent(a *rowAcc, groups []*variantGroup) {
	for gi, g := range groups {
		if a.vals[gi] == nil {
			a.vals[gi] = make([]float64, len(g.runs))
			for i := range a.vals[gi] {
				a.vals[gi][i] = math.NaN()
			}
		}
		if a.def.kind != kindCount {
			continue
		}
		for ri, r := range g.runs {
			if math.IsNaN(a.vals[gi][ri]) && countApplies(a.def, r) {
				a.vals[gi][ri] = 0
			}
		}
	}
}

// countApplies says whether a run could have had a count at all: a run
// without a series has no peaks, one without counters no counter deltas.
func countApplies(d metricDef, r *results.Run) bool {
	switch {
	case strings.HasPrefix(d.metric, "peak "):
		// Load decodes the series at once when a record has no peaks.
		return len(r.Peaks) > 0 || len(r.Series) > 0
	case strings.HasPrefix(d.metric, "storm "):
		return r.Storm != nil
	case d.unit == "count" && !strings.HasPrefix(d.metric, "errors") && d.metric != "late starts":
		return len(r.Counters) > 0
	}
	return true
}

func allZero(vals [][]float64) bool {
	for _, vs := range vals {
		for _, v := range vs {
			if !math.IsNaN(v) && v != 0 {
				return false
			}
		}
	}
	return true
}

// scenarioOrder lists scenarios in mix order of the first variant, then any
// others as they appear.
func scenarioOrder(groups []*variantGroup) []string {
	var out []string
	for _, g := range groups {
		for _, r := range g.runs {
			for _, m := range r.Config.Mix {
				out = appendUnique(out, m.Scenario)
			}
			for _, sc := range r.Scenarios {
				out = appendUnique(out, sc.Name)
			}
		}
	}
	return out
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

func scenarioMetrics(sc results.ScenarioResult, seconds float64, emit func(metricDef, float64)) {
	rate := sc.Rate
	if rate == 0 && seconds > 0 {
		rate = float64(sc.Cycles) / seconds
	}
	emit(metricDef{metric: "cycles/s", unit: "cycles/s", bench: "cycles/s", better: +1, kind: kindRate, order: 0}, rate)
	for name, p := range sc.Phases {
		if p.Count == 0 {
			continue
		}
		pi := indexOf(knownPhases, name)
		if pi < 0 {
			pi = len(knownPhases)
		}
		for k, sp := range shownPercentiles {
			emit(metricDef{metric: name + " " + sp.name, unit: "ns", bench: name + "-" + sp.bench + "-ns", better: -1, kind: kindLatency,
				order: 10 + float64(pi) + float64(k)/10}, float64(sp.get(p)))
		}
	}
	errorMetrics(sc.Errors, 100, emit)
	if sc.LateStarts > 0 {
		emit(metricDef{metric: "late starts", unit: "count", bench: "late-starts", better: -1, kind: kindCount, order: 150, hideZero: true}, float64(sc.LateStarts))
	}
}

// dwellMetrics emits the time the kernel kept the scenario's connections
// in each closing state (eBPF tracer), per side: p50 and p99, so that a
// matrix over tcp_fin_timeout shows its effect as a distribution.
func dwellMetrics(g results.EventGroup, emit func(metricDef, float64)) {
	for si, st := range closingStates {
		d, ok := g.Dwell[st]
		if !ok || d.Count == 0 {
			continue
		}
		for k, pc := range []struct {
			name string
			v    int64
		}{{"p50", d.P50}, {"p99", d.P99}} {
			name := "kernel " + g.Side + " " + st + " " + pc.name
			emit(metricDef{metric: name, unit: "ns", bench: "dwell-" + g.Side + "-" + strings.ToLower(st) + "-" + pc.name + "-ns",
				better: -1, kind: kindLatency, order: 60 + float64(si) + float64(k)/10}, float64(pc.v))
		}
	}
}

func errorMetrics(errs map[string]results.ErrorCount, order float64, emit func(metricDef, float64)) {
	var total uint64
	for _, e := range errs {
		total += e.Count
	}
	emit(metricDef{metric: "errors", unit: "count", bench: "errors", better: -1, kind: kindCount, order: order}, float64(total))
	// Port exhaustion is the error a close comparison is about (reuse,
	// sources, port ranges): its row stays, zero included, so that "no
	// exhaustion" is said rather than left out.
	exhausted := indexOf(knownErrors, portExhaustion)
	emit(metricDef{metric: "errors " + portExhaustion, unit: "count", bench: portExhaustion + "-errors", better: -1, kind: kindCount,
		order: order + 1 + float64(exhausted)/100}, float64(errs[portExhaustion].Count))
	for class, e := range errs {
		if class == portExhaustion {
			continue
		}
		ci := indexOf(knownErrors, class)
		if ci < 0 {
			ci = len(knownErrors)
		}
		emit(metricDef{metric: "errors " + class, unit: "count", bench: class + "-errors", better: -1, kind: kindCount,
			order: order + 1 + float64(ci)/100, hideZero: true}, float64(e.Count))
	}
}

// runMetrics emits the run-wide rows: totals (only when the mix has several
// scenarios), socket-state peaks, kernel counters and storm figures.
func runMetrics(r *results.Run, totals bool, emit func(metricDef, float64)) {
	if totals {
		rate := r.Totals.Rate
		if rate == 0 && r.MeasuredSeconds > 0 {
			rate = float64(r.Totals.Cycles) / r.MeasuredSeconds
		}
		emit(metricDef{metric: "cycles/s", unit: "cycles/s", bench: "cycles/s", better: +1, kind: kindRate, order: 0}, rate)
		errorMetrics(r.Totals.Errors, 100, emit)
	}
	peaks := r.Peaks
	if len(peaks) == 0 && len(r.Series) > 0 {
		peaks = peaksOf(r.Series)
	}
	if len(peaks) > 0 {
		for i, st := range mainStates {
			emit(metricDef{metric: "peak " + st, unit: "sockets", bench: peakUnit(st), kind: kindCount, order: 200 + float64(i)}, float64(peaks[st].Total))
		}
		for i, st := range otherStates {
			if c, ok := peaks[st]; ok {
				emit(metricDef{metric: "peak " + st, unit: "sockets", bench: peakUnit(st), kind: kindCount, order: 210 + float64(i), hideZero: true}, float64(c.Total))
			}
		}
		if c, ok := peaks["FIN_WAIT2"]; ok {
			emit(metricDef{metric: "peak FIN_WAIT2 orphaned", unit: "sockets", bench: "peak-finwait2-orphaned", kind: kindCount, order: 201.5, hideZero: true}, float64(c.Orphaned))
		}
	}
	for _, c := range r.Counters {
		ci := indexOf(closeCounters, c.Name)
		if ci < 0 && !closeCounterPattern.MatchString(c.Name) {
			continue
		}
		order := 300 + float64(ci)
		if ci < 0 {
			order = 400
		}
		name := c.Name
		if c.Scope == "global" {
			name += " (global)"
		}
		better := 0
		switch c.Name {
		case "TcpExt.TCPTimeWaitOverflow", "TcpExt.ListenOverflows", "TcpExt.ListenDrops", "TcpExt.TCPAbortOnMemory", "TcpExt.TCPAbortFailed":
			better = -1
		}
		// TWRecycled answers "did tcp_tw_reuse act?": zero is an answer.
		hide := c.Name != "TcpExt.TWRecycled"
		emit(metricDef{metric: name, unit: "count", bench: c.Name, better: better, kind: kindCount, order: order, hideZero: hide}, float64(c.Delta))
	}
	if st := r.Storm; st != nil {
		emit(metricDef{metric: "storm time to last close", unit: "ns", bench: "storm-last-close-ns", better: -1, kind: kindLatency, order: 500}, float64(st.TimeToLastClose))
		emit(metricDef{metric: "storm hold peak", unit: "count", bench: "storm-hold-peak", better: +1, kind: kindCount, order: 501}, float64(st.HoldPeak))
		emit(metricDef{metric: "storm failed", unit: "count", bench: "storm-failed", better: -1, kind: kindCount, order: 502, hideZero: true}, float64(st.Failed))
		emit(metricDef{metric: "storm unaccounted", unit: "count", bench: "storm-unaccounted", better: -1, kind: kindCount, order: 503, hideZero: true}, float64(st.Unaccounted))
	}
}

// peakUnit is the benchmark unit of a state's peak: peak-timewait.
func peakUnit(state string) string {
	return "peak-" + strings.ToLower(strings.ReplaceAll(state, "_", ""))
}

func peaksOf(series []results.Sample) map[string]results.StateCount {
	peaks := map[string]results.StateCount{}
	for _, s := range series {
		if slices.Contains(s.Missing, "states") {
			continue
		}
		for name, c := range s.States {
			p := peaks[name]
			p.Total = max(p.Total, c.Total)
			p.Orphaned = max(p.Orphaned, c.Orphaned)
			peaks[name] = p
		}
	}
	return peaks
}
