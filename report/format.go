package report

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// formatValue prints a value in its unit for people: durations as ns, µs,
// ms or s with three significant digits, counts and rates with k/M/G.
func formatValue(v float64, unit string) string {
	if math.IsNaN(v) {
		return "-"
	}
	if unit == "ns" {
		return formatNs(v)
	}
	return formatCount(v)
}

func formatNs(v float64) string {
	a := math.Abs(v)
	switch {
	case a == 0:
		return "0"
	case a < 1e3:
		return sig3(v) + "ns"
	case a < 1e6:
		return sig3(v/1e3) + "µs"
	case a < 1e9:
		return sig3(v/1e6) + "ms"
	default:
		return sig3(v/1e9) + "s"
	}
}

func formatCount(v float64) string {
	a := math.Abs(v)
	switch {
	case a < 1e3:
		if v == math.Trunc(v) {
			return strconv.FormatFloat(v, 'f', 0, 64)
		}
		return sig3(v)
	case a < 1e6:
		return sig3(v/1e3) + "k"
	case a < 1e9:
		return sig3(v/1e6) + "M"
	default:
		return sig3(v/1e9) + "G"
	}
}

// sig3 prints three significant digits without a trailing ".0".
func sig3(v float64) string {
	a := math.Abs(v)
	prec := 0
	switch {
	case a < 10:
		prec = 2
	case a < 100:
		prec = 1
	}
	s := strconv.FormatFloat(v, 'f', prec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// formatCell is the value column of a cell: "14.6k ±2%". An unbounded
// interval (too few repeats) is left out; a note says why.
func formatCell(c Cell, unit string) string {
	if c.N == 0 {
		return "-"
	}
	s := formatValue(c.Median, unit)
	if c.Range != "" && c.Range != "∞" {
		s += " ±" + c.Range
	}
	return s
}

// formatRatio is a cell's ratio to the baseline: "×1.62", or the absolute
// change when the baseline is 0.
func formatRatio(c Cell, base Cell, unit string) string {
	if c.Ratio != nil {
		return "×" + ratioString(*c.Ratio)
	}
	if base.N == 0 || c.N == 0 {
		return ""
	}
	d := c.Median - base.Median
	sign := "+"
	if d < 0 {
		sign = "-"
	}
	return sign + formatValue(math.Abs(d), unit)
}

func ratioString(r float64) string {
	switch {
	case r == 0:
		return "0"
	case r < 0.01:
		return strconv.FormatFloat(r, 'g', 2, 64)
	case r != 1 && math.Abs(r-1) < 0.005:
		// Do not print a measured change as ×1.00.
		return strconv.FormatFloat(r, 'f', 3, 64)
	case r >= 100:
		return strconv.FormatFloat(r, 'f', 0, 64)
	case r >= 10:
		return strconv.FormatFloat(r, 'f', 1, 64)
	default:
		return strconv.FormatFloat(r, 'f', 2, 64)
	}
}

// formatVs is the "vs base" column: ratio, verdict and the test behind it,
// as in "×1.62 (p=0.008 n=5)", "×1.02 ~ (p=0.548 n=5)" or
// "×1.59 too few runs (p=0.100 n=3)".
func formatVs(c Cell, base Cell, unit string) string {
	switch c.Verdict {
	case VerdictBaseline:
		return ""
	case VerdictNoData:
		return "no data"
	}
	ratio := formatRatio(c, base, unit)
	n := nString(base.N, c.N)
	switch c.Verdict {
	case VerdictIdentical:
		return strings.TrimSpace(ratio + " identical (" + n + ")")
	case VerdictSignificant:
		return fmt.Sprintf("%s (p=%.3f %s)", ratio, *c.P, n)
	case VerdictNotSignificant:
		return fmt.Sprintf("%s ~ (p=%.3f %s)", ratio, *c.P, n)
	case VerdictTooFew:
		return fmt.Sprintf("%s too few runs (p=%.3f %s)", ratio, *c.P, n)
	}
	return ratio
}

func nString(n1, n2 int) string {
	if n1 == n2 {
		return fmt.Sprintf("n=%d", n1)
	}
	return fmt.Sprintf("n=%d+%d", n1, n2)
}

// tableTitle heads a table: the scenario and what the variants ran.
func (c *Comparison) tableTitle(t Table) string {
	if t.Scenario == "all" && !c.hasScenario("all") {
		return "all scenarios (run-wide)"
	}
	return "scenario " + t.Scenario
}

func (c *Comparison) hasScenario(name string) bool {
	for _, g := range c.groups {
		for _, r := range g.runs {
			for _, sc := range r.Scenarios {
				if sc.Name == name {
					return true
				}
			}
		}
	}
	return false
}

// sharedConfig is the configuration line when every variant has the same
// one, else "".
func (c *Comparison) sharedConfig() string {
	if len(c.Variants) == 0 {
		return ""
	}
	s := c.Variants[0].Config
	for _, v := range c.Variants[1:] {
		if v.Config != s {
			return ""
		}
	}
	return s
}

func (c *Comparison) runCount() int {
	n := 0
	for _, v := range c.Variants {
		n += len(v.Runs)
	}
	return n
}

// headline is the first line of every human-readable format.
func (c *Comparison) headline() string {
	s := fmt.Sprintf("closeload report: %d variant(s), %d run(s), baseline %s", len(c.Variants), c.runCount(), c.Variants[c.Baseline].Name)
	if m := c.matrixID(); m != "" {
		s += ", matrix " + m
	}
	return s
}

func (c *Comparison) matrixID() string {
	var ids []string
	for _, g := range c.groups {
		for _, r := range g.runs {
			if r.Matrix != "" {
				ids = appendUnique(ids, r.Matrix)
			}
		}
	}
	return strings.Join(ids, ",")
}

// method says how to read the cells.
func (c *Comparison) method() string {
	return fmt.Sprintf("cells: median ±%.0f%% confidence interval over repeats; vs base: ratio of medians, Mann-Whitney U test at α=%g (benchstat's); ~ = no significant difference",
		c.Confidence*100, c.Alpha)
}

// advice explains "too few runs" once, in the reader's terms.
func (c *Comparison) advice() []string {
	var out []string
	tooFew := false
	for _, t := range c.Tables {
		for _, r := range t.Rows {
			for _, cell := range r.Cells {
				tooFew = tooFew || cell.Verdict == VerdictTooFew
			}
		}
	}
	if tooFew {
		out = append(out, fmt.Sprintf("too few runs: with these repeat counts no difference can reach α=%g, however large; repeat each variant at least %d times", c.Alpha, minRuns(c.Alpha)))
	}
	return out
}

// allNotes is every note to print: skipped inputs, then the comparison's.
func (c *Comparison) allNotes() []string {
	var out []string
	for _, s := range c.Skipped {
		out = append(out, s.String())
	}
	out = append(out, c.Notes...)
	return out
}
