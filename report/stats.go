package report

import (
	"math"
	"sync"

	"golang.org/x/perf/benchmath"
)

// The statistics are benchstat's: the median with its confidence interval
// (benchmath.AssumeNothing.Summary) and the Mann-Whitney U test
// (benchmath.AssumeNothing.Compare). Nothing here is hand-written
// statistics; this file only decides what to tell the reader.

// compareRow summarizes every variant's values and tests each against the
// baseline.
func compareRow(a *rowAcc, base int, opts Options, warn func(error)) Row {
	th := &benchmath.Thresholds{CompareAlpha: opts.Alpha}
	row := Row{Metric: a.def.metric, Unit: a.def.unit, Bench: a.def.bench, Better: a.def.better, vals: a.vals}
	samples := make([]*benchmath.Sample, len(a.vals))
	for i, vals := range a.vals {
		if present := presentValues(vals); len(present) > 0 {
			samples[i] = benchmath.NewSample(present, th)
		}
	}
	for i, vals := range a.vals {
		cell := Cell{Values: presentValues(vals)}
		s := samples[i]
		if s == nil {
			cell.Verdict = VerdictNoData
			cell.Range = ""
			row.Cells = append(row.Cells, cell)
			continue
		}
		cell.N = len(s.Values)
		sum := benchmath.AssumeNothing.Summary(s, opts.Confidence)
		for _, w := range sum.Warnings {
			warn(w)
		}
		cell.Median = sum.Center
		if !math.IsInf(sum.Lo, 0) && !math.IsInf(sum.Hi, 0) {
			lo, hi := sum.Lo, sum.Hi
			cell.Lo, cell.Hi = &lo, &hi
		}
		cell.Range = sum.PctRangeString()
		b := samples[base]
		switch {
		case i == base:
			cell.Verdict = VerdictBaseline
		case b == nil:
			cell.Verdict = VerdictNoData
		default:
			if bm := benchmath.AssumeNothing.Summary(b, opts.Confidence).Center; bm != 0 {
				r := cell.Median / bm
				cell.Ratio = &r
			} else if cell.Median == 0 {
				r := 1.0
				cell.Ratio = &r
			}
			if identical(b.Values, s.Values) {
				cell.Verdict = VerdictIdentical
				break
			}
			// The test's own warning ("need >= n samples to detect a
			// difference") is what VerdictTooFew says, with advice.
			cmp := benchmath.AssumeNothing.Compare(b, s)
			p := cmp.P
			cell.P = &p
			switch {
			case cmp.P <= cmp.Alpha:
				cell.Verdict = VerdictSignificant
				higher := cell.Median > benchmath.AssumeNothing.Summary(b, opts.Confidence).Center
				switch {
				case a.def.better > 0 && higher, a.def.better < 0 && !higher:
					cell.Direction = "better"
				case a.def.better != 0:
					cell.Direction = "worse"
				}
			case minP(len(b.Values), len(s.Values), opts.Alpha) > opts.Alpha:
				cell.Verdict = VerdictTooFew
			default:
				cell.Verdict = VerdictNotSignificant
			}
		}
		row.Cells = append(row.Cells, cell)
	}
	return row
}

func presentValues(vals []float64) []float64 {
	out := make([]float64, 0, len(vals))
	for _, v := range vals {
		if !math.IsNaN(v) {
			out = append(out, v)
		}
	}
	return out
}

// identical reports whether every value of both samples is the same: no
// test can tell them apart, and none is needed.
func identical(a, b []float64) bool {
	for _, v := range a {
		if v != a[0] {
			return false
		}
	}
	for _, v := range b {
		if v != a[0] {
			return false
		}
	}
	return true
}

var minPCache sync.Map

// minP is the smallest p-value the U test can give for samples of sizes n1
// and n2: that of two completely separated samples, computed by benchmath
// itself. When even that is above alpha, no difference can be significant
// and the truth is "too few runs".
func minP(n1, n2 int, alpha float64) float64 {
	type key struct {
		n1, n2 int
		alpha  float64
	}
	k := key{n1, n2, alpha}
	if v, ok := minPCache.Load(k); ok {
		return v.(float64)
	}
	th := &benchmath.Thresholds{CompareAlpha: alpha}
	a, b := make([]float64, n1), make([]float64, n2)
	for i := range a {
		a[i] = float64(i)
	}
	for i := range b {
		b[i] = float64(n1 + i)
	}
	p := benchmath.AssumeNothing.Compare(benchmath.NewSample(a, th), benchmath.NewSample(b, th)).P
	minPCache.Store(k, p)
	return p
}

// minRuns is the fewest repeats per variant at which the U test can reach
// alpha, for the advice printed under a table.
func minRuns(alpha float64) int {
	for n := 2; n <= 50; n++ {
		if minP(n, n, alpha) <= alpha {
			return n
		}
	}
	return 50
}
