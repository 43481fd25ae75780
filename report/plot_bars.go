package report

import (
	"fmt"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// barMetric is one panel of a bar figure: the table row it comes from.
type barMetric struct{ metric, title string }

// headlineMetrics answer "what changed": the rate and the close latency.
var headlineMetrics = []barMetric{
	{"cycles/s", "cycles/s (higher is better)"},
	{"total p50", "total p50: dial to close returned"},
	{"total p99", "total p99"},
	{"drain p99", "drain p99: own FIN to peer's EOF"},
}

// explainMetrics are the kernel figures that explain the headline: did
// tcp_tw_reuse act, did the ports run out, did closes turn into resets,
// how much TIME_WAIT was held.
var explainMetrics = []barMetric{
	{"TcpExt.TWRecycled", "TWRecycled: TIME_WAIT reused by connect()"},
	{"errors addr-not-available", "addr-not-available errors (ports exhausted)"},
	{"Tcp.OutRsts", "resets sent (Tcp.OutRsts)"},
	{"TcpExt.TCPAbortOnClose", "TCPAbortOnClose: close with unread data"},
	{"TcpExt.TCPAbortOnData", "TCPAbortOnData: linger 0, data after close"},
	{"TcpExt.TCPTimeWaitOverflow", "TCPTimeWaitOverflow: TIME_WAIT table full"},
	{"peak TIME_WAIT", "peak TIME_WAIT"},
}

// findRow returns the run-wide row of a metric if there is one, else the
// first scenario's, and that table's scenario.
func (c *Comparison) findRow(metric string) (Row, string, bool) {
	var found Row
	scenario, ok := "", false
	for _, t := range c.Tables {
		for _, r := range t.Rows {
			if r.Metric != metric {
				continue
			}
			if t.Scenario == "all" {
				return r, t.Scenario, true
			}
			if !ok {
				found, scenario, ok = r, t.Scenario, true
			}
		}
	}
	return found, scenario, ok
}

// errPoints are bar tops with the range of the repeats as error bars.
type errPoints struct {
	plotter.XYs
	plotter.YErrors
}

// significance is the label above a variant's bar: how it compares with
// the baseline and whether the difference is significant.
func significance(cell, base Cell) string {
	if cell.Verdict == VerdictBaseline {
		return "baseline"
	}
	ratio := "vs 0"
	if cell.Ratio != nil {
		ratio = fmt.Sprintf("×%.3g", *cell.Ratio)
	}
	switch cell.Verdict {
	case VerdictSignificant:
		s := ratio + fmt.Sprintf(" p=%.3f", *cell.P)
		if cell.Direction != "" {
			s += " " + cell.Direction
		}
		return s
	case VerdictNotSignificant:
		return ratio + " ~ not significant"
	case VerdictTooFew:
		return ratio + ", too few runs"
	case VerdictIdentical:
		return ratio + " identical"
	}
	return cell.Verdict
}

// barPanel draws one metric per variant: the median of the repeats as a
// bar, their range as an error bar, the comparison with the baseline above
// it. An all-zero metric gets a 0..1 axis.
func (c *Comparison) barPanel(row Row, title string, names []string) (*plot.Plot, error) {
	scale, unit := 1.0, row.Unit
	if row.Unit == "ns" {
		scale, unit = 1e6, "ms"
	}
	p := newPlot(title, "", unit)
	var pts errPoints
	var labels plotter.XYLabels
	hi := 0.0
	base := row.Cells[c.Baseline]
	for vi, cell := range row.Cells {
		if cell.N == 0 {
			continue
		}
		bar, err := plotter.NewBarChart(plotter.Values{cell.Median / scale}, vg.Points(40))
		if err != nil {
			return nil, err
		}
		bar.XMin = float64(vi)
		bar.Color = variantColor(vi)
		bar.LineStyle.Width = 0
		p.Add(bar)
		lo, top := minMax(cell.Values)
		pts.XYs = append(pts.XYs, plotter.XY{X: float64(vi), Y: cell.Median / scale})
		pts.YErrors = append(pts.YErrors, struct{ Low, High float64 }{(cell.Median - lo) / scale, (top - cell.Median) / scale})
		hi = math.Max(hi, top/scale)
		labels.XYs = append(labels.XYs, plotter.XY{X: float64(vi), Y: top / scale})
		labels.Labels = append(labels.Labels, significance(cell, base))
	}
	if len(pts.XYs) == 0 {
		return nil, nil
	}
	eb, err := plotter.NewYErrorBars(pts)
	if err != nil {
		return nil, err
	}
	p.Add(eb)
	countAxis(p, hi)
	// Room above the tallest bar for its label.
	p.Y.Max *= 1.18
	for i := range labels.XYs {
		labels.XYs[i].Y += (p.Y.Max - p.Y.Min) * 0.05
	}
	lb, err := plotter.NewLabels(labels)
	if err != nil {
		return nil, err
	}
	for i := range lb.TextStyle {
		lb.TextStyle[i].XAlign = -0.5
		lb.TextStyle[i].Font.Size = vg.Points(12)
	}
	p.Add(lb)
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.6, float64(len(names))-0.4
	return p, nil
}

// barFigure draws one panel per metric that the comparison has.
func (c *Comparison) barFigure(name, title string, metrics []barMetric) (Plot, bool, error) {
	names := make([]string, len(c.Variants))
	for i, v := range c.Variants {
		names[i] = v.Name
	}
	var panels []*plot.Plot
	for _, m := range metrics {
		row, scenario, ok := c.findRow(m.metric)
		if !ok {
			continue
		}
		t := m.title
		if scenario != "all" && len(c.Tables) > 1 {
			t += " (" + scenario + ")"
		}
		p, err := c.barPanel(row, t, names)
		if err != nil {
			return Plot{}, false, err
		}
		if p != nil {
			panels = append(panels, p)
		}
	}
	if len(panels) == 0 {
		return Plot{}, false, nil
	}
	return figure(name, title, panels, 2, 3*vg.Inch, nil), true, nil
}

// headlinePlot is the answer: rate and close latency per variant, with the
// significance of each difference from the baseline.
func (c *Comparison) headlinePlot() (Plot, bool, error) {
	return c.barFigure("headline", "Headline: rate and close latency per variant (bar: median of the repeats; whisker: their range; label: vs baseline, Mann-Whitney U)", headlineMetrics)
}

// explainPlot holds the kernel figures that explain the headline.
func (c *Comparison) explainPlot() (Plot, bool, error) {
	return c.barFigure("kernel", "Why: TIME_WAIT reuse, port exhaustion and resets per variant (median of the repeats; whisker: their range)", explainMetrics)
}

func minMax(vs []float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, v := range vs {
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	return lo, hi
}
