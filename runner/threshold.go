package runner

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/results"
	"github.com/closeload/closeload/workload"
)

// ErrThreshold marks a threshold expression that does not parse.
var ErrThreshold = errors.New("bad threshold")

// Threshold is one pass/fail criterion of a run, in the k6 manner:
//
//	errors<0.1%               errors per attempt
//	rate>=10000               completed connections per second
//	total.p99<5ms             a phase's percentile (p50 p90 p99 p999 p9999 max mean min)
//	peak.CLOSE_WAIT<100       the highest count of a socket state
//	unfinished==0             connections unfinished at the stop
//	client-halfclose.total.p99<2ms   any of these for one scenario
type Threshold struct {
	Expr     string  `json:"expr"`
	Scenario string  `json:"scenario,omitempty"`
	Metric   string  `json:"metric"`
	Op       string  `json:"op"`
	Value    float64 `json:"value"`
	// Unit of Value: ns, ratio, 1/s or count.
	Unit string `json:"unit"`
}

// thresholdOps, longest first so "<=" is not read as "<".
var thresholdOps = []string{"<=", ">=", "==", "!=", "<", ">"}

var percentiles = map[string]bool{"p50": true, "p90": true, "p99": true, "p999": true, "p9999": true, "max": true, "min": true, "mean": true}

// ParseThreshold parses one threshold expression.
func ParseThreshold(expr string) (Threshold, error) {
	t := Threshold{Expr: strings.TrimSpace(expr)}
	e := strings.ReplaceAll(t.Expr, " ", "")
	var lhs, rhs string
	for _, op := range thresholdOps {
		if i := strings.Index(e, op); i > 0 {
			lhs, rhs, t.Op = e[:i], e[i+len(op):], op
			break
		}
	}
	if t.Op == "" || rhs == "" {
		return t, fmt.Errorf("%w %q: want METRIC OP VALUE such as errors<0.1%%, total.p99<5ms, rate>=10000, peak.CLOSE_WAIT<100", ErrThreshold, expr)
	}
	parts := strings.Split(lhs, ".")
	if _, err := workload.ParseScenario(parts[0]); err == nil && len(parts) > 1 {
		t.Scenario, parts = parts[0], parts[1:]
	}
	t.Metric = strings.Join(parts, ".")
	switch {
	case t.Metric == "errors":
		t.Unit = "ratio"
	case t.Metric == "rate":
		t.Unit = "1/s"
	case t.Metric == "unfinished", t.Metric == "cycles", t.Metric == "attempts":
		t.Unit = "count"
	case len(parts) == 2 && parts[0] == "peak":
		if t.Scenario != "" {
			return t, fmt.Errorf("%w %q: socket-state peaks are counted for the whole run, not per scenario", ErrThreshold, expr)
		}
		if !knownState(parts[1]) {
			return t, fmt.Errorf("%w %q: unknown state %q (e.g. TIME_WAIT, FIN_WAIT2, CLOSE_WAIT, LAST_ACK, SYN_SENT)", ErrThreshold, expr, parts[1])
		}
		t.Metric = "peak." + strings.ToUpper(parts[1])
		t.Unit = "count"
	case len(parts) == 2 && isPhase(parts[0]) && percentiles[parts[1]]:
		t.Unit = "ns"
	default:
		return t, fmt.Errorf("%w %q: unknown metric %q; want errors, rate, unfinished, cycles, attempts, PHASE.PCT (phases %s; %s) or peak.STATE", ErrThreshold, expr, t.Metric, strings.Join(collector.PhaseNames[:], ", "), "p50 p90 p99 p999 p9999 min max mean")
	}
	v, err := parseThresholdValue(rhs, t.Unit)
	if err != nil {
		return t, fmt.Errorf("%w %q: %v", ErrThreshold, expr, err)
	}
	t.Value = v
	return t, nil
}

func isPhase(s string) bool {
	for _, p := range collector.PhaseNames {
		if p == s {
			return true
		}
	}
	return false
}

func knownState(s string) bool {
	for _, n := range collector.StateNames {
		if n != "" && n == strings.ToUpper(s) {
			return true
		}
	}
	return false
}

// parseThresholdValue reads a value in the metric's unit: a duration for
// latencies, a percentage or a fraction for ratios, a number otherwise.
func parseThresholdValue(s, unit string) (float64, error) {
	switch unit {
	case "ns":
		d, err := time.ParseDuration(strings.ReplaceAll(s, "µs", "us"))
		if err != nil {
			return 0, fmt.Errorf("value %q: want a duration such as 5ms or 250us", s)
		}
		return float64(d.Nanoseconds()), nil
	case "ratio":
		if v, ok := strings.CutSuffix(s, "%"); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 {
				return 0, fmt.Errorf("value %q: want a percentage such as 0.1%%", s)
			}
			return f / 100, nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("value %q: want a number", s)
	}
	return f, nil
}

// check is the plan-time part: a per-scenario threshold names a scenario
// of the mix.
func (t Threshold) check() error {
	if t.Op == "" {
		if _, err := ParseThreshold(t.Expr); err != nil {
			return fieldErr("Thresholds", "%v", err)
		}
	}
	return nil
}

// checkScenario refuses a threshold on a scenario the mix does not play.
func (t Threshold) checkScenario(m workload.Mix) error {
	if t.Scenario == "" {
		return nil
	}
	s, _ := workload.ParseScenario(t.Scenario)
	if !m.Has(s) {
		return fieldErr("Thresholds", "%q: scenario %s is not in {Mix} %s", t.Expr, t.Scenario, m)
	}
	return nil
}

// Evaluate measures the threshold on a record.
func (t Threshold) Evaluate(r *results.Run) results.ThresholdResult {
	out := results.ThresholdResult{Expr: t.Expr, Unit: t.Unit}
	v, ok := t.measure(r)
	if !ok {
		out.Missing = true
		return out
	}
	out.Value = v
	switch t.Op {
	case "<":
		out.Held = v < t.Value
	case "<=":
		out.Held = v <= t.Value
	case ">":
		out.Held = v > t.Value
	case ">=":
		out.Held = v >= t.Value
	case "==":
		out.Held = v == t.Value
	case "!=":
		out.Held = v != t.Value
	}
	return out
}

func (t Threshold) measure(r *results.Run) (float64, bool) {
	var sc *results.ScenarioResult
	if t.Scenario != "" {
		for i := range r.Scenarios {
			if r.Scenarios[i].Name == t.Scenario {
				sc = &r.Scenarios[i]
			}
		}
		if sc == nil {
			return 0, false
		}
	}
	cycles, attempts, rate, errs := r.Totals.Cycles, r.Totals.Attempts, r.Totals.Rate, results.ErrorTotal(r.Totals.Errors)
	unfinished := results.CountTotal(r.Totals.Unfinished)
	if sc != nil {
		cycles, attempts, rate, errs = sc.Cycles, sc.Attempts, sc.Rate, results.ErrorTotal(sc.Errors)
		unfinished = results.CountTotal(sc.Unfinished)
	}
	switch {
	case t.Metric == "errors":
		if attempts == 0 {
			return 0, false
		}
		return float64(errs) / float64(attempts), true
	case t.Metric == "rate":
		return rate, true
	case t.Metric == "cycles":
		return float64(cycles), true
	case t.Metric == "attempts":
		return float64(attempts), true
	case t.Metric == "unfinished":
		return float64(unfinished), true
	case strings.HasPrefix(t.Metric, "peak."):
		if r.Collector == nil || r.Collector.Source == "none" || r.Collector.Source == "" {
			return 0, false
		}
		return float64(r.Peaks[strings.TrimPrefix(t.Metric, "peak.")].Total), true
	}
	phase, pct, _ := strings.Cut(t.Metric, ".")
	scens := r.Scenarios
	if sc != nil {
		scens = []results.ScenarioResult{*sc}
	}
	// Across scenarios a percentile is the merged histogram's.
	h := results.NewHistogram()
	n := 0
	for _, s := range scens {
		p, ok := s.Phases[phase]
		if !ok || p.Count == 0 {
			continue
		}
		d, err := results.DecodeHistogram(p.Histogram)
		if err != nil {
			return 0, false
		}
		h.Merge(d)
		n++
	}
	if n == 0 || h.TotalCount() == 0 {
		return 0, false
	}
	switch pct {
	case "max":
		return float64(h.Max()), true
	case "min":
		return float64(h.Min()), true
	case "mean":
		return h.Mean(), true
	}
	q, _ := strconv.ParseFloat(strings.TrimPrefix(pct, "p"), 64)
	switch pct {
	case "p999":
		q = 99.9
	case "p9999":
		q = 99.99
	}
	return float64(h.ValueAtQuantile(q)), true
}
