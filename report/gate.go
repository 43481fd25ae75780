package report

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// ErrRegression is returned by Gate when a variant is worse than the
// baseline beyond the allowed limit and the difference is significant: a
// release candidate's CI step fails on it (the command exits 3).
var ErrRegression = errors.New("regression against the baseline")

// Regression is one figure of one variant that is worse than the baseline
// by more than the limit, with a significant difference.
type Regression struct {
	Scenario string `json:"scenario"`
	Metric   string `json:"metric"`
	Unit     string `json:"unit"`
	Variant  string `json:"variant"`
	// Baseline and Value are the medians of the repeats.
	Baseline float64 `json:"baseline"`
	Value    float64 `json:"value"`
	// Worse is how much worse, as a fraction of the baseline (0.12 = 12%);
	// +Inf when the baseline is 0 (errors where there were none).
	Worse float64 `json:"worse"`
	P     float64 `json:"p"`
}

// String is the line the report prints for a regression.
func (r Regression) String() string {
	worse := "from none"
	if !math.IsInf(r.Worse, 1) {
		worse = fmt.Sprintf("%.1f%% worse", 100*r.Worse)
	}
	return fmt.Sprintf("%s: %s %s: %s vs baseline %s (%s, p=%.3f)", r.Variant, r.Scenario, r.Metric,
		formatValue(r.Value, r.Unit), formatValue(r.Baseline, r.Unit), worse, r.P)
}

// gated says whether a row takes part in the regression gate: the rate,
// the phase latencies and the errors. Socket-state peaks and kernel
// counters explain a change; they are not a service level.
func gated(r Row) bool {
	switch {
	case r.Better == 0:
		return false
	case r.Metric == "cycles/s", r.Unit == "ns":
		return true
	case r.Metric == "errors", strings.HasPrefix(r.Metric, "errors "):
		return true
	}
	return false
}

// Gate returns every gated figure of a variant other than the baseline that
// is worse than the baseline's by more than limit (a fraction: 0.05 for 5%)
// while the Mann-Whitney U test calls the difference significant, and
// ErrRegression when there is any. Too few repeats can never be
// significant, so a gate needs at least four repeats on each side at the
// default alpha.
func (c *Comparison) Gate(limit float64) ([]Regression, error) {
	if limit < 0 || math.IsNaN(limit) {
		return nil, fmt.Errorf("regression limit %g: want a fraction of 0 or more, such as 0.05", limit)
	}
	var out []Regression
	for _, t := range c.Tables {
		for _, row := range t.Rows {
			if !gated(row) {
				continue
			}
			base := row.Cells[c.Baseline]
			for i, cell := range row.Cells {
				if i == c.Baseline || cell.Verdict != VerdictSignificant || cell.Direction != "worse" || cell.P == nil {
					continue
				}
				worse := math.Inf(1)
				if base.Median != 0 {
					worse = (cell.Median - base.Median) / math.Abs(base.Median)
					if row.Better > 0 {
						worse = -worse
					}
				}
				if worse <= limit {
					continue
				}
				out = append(out, Regression{Scenario: t.Scenario, Metric: row.Metric, Unit: row.Unit, Variant: c.Variants[i].Name,
					Baseline: base.Median, Value: cell.Median, Worse: worse, P: *cell.P})
			}
		}
	}
	if len(out) > 0 {
		return out, fmt.Errorf("%w: %d figure(s) worse by more than %g%%", ErrRegression, len(out), 100*limit)
	}
	return nil, nil
}
