package report

import (
	"fmt"
	"math"
	"sort"
	"strings"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/closeload/closeload/results"
)

// percentileTicks label the percentile axis: x = log10(1/(1-q)).
var percentileTicks = plot.ConstantTicks{
	{Value: 0, Label: "0%"}, {Value: 1, Label: "90%"}, {Value: 2, Label: "99%"}, {Value: 3, Label: "99.9%"},
	{Value: 4, Label: "99.99%"}, {Value: 5, Label: "99.999%"}, {Value: 6, Label: "99.9999%"},
}

// percentileCurve samples a histogram along the percentile axis, up to the
// resolution its count supports.
func percentileCurve(h *hdrhistogram.Histogram, scale float64) plotter.XYs {
	n := h.TotalCount()
	if n == 0 {
		return nil
	}
	xmax := math.Min(6, math.Max(1, math.Log10(float64(n))))
	const step = 0.025
	var xs, ps []float64
	for x := 0.0; x <= xmax+1e-9; x += step {
		xs = append(xs, x)
		ps = append(ps, 100*(1-math.Pow(10, -x)))
	}
	vals := h.ValueAtPercentilesSlice(ps)
	xys := make(plotter.XYs, 0, len(xs))
	for i, x := range xs {
		v := float64(vals[i]) / scale
		if v <= 0 {
			continue
		}
		xys = append(xys, plotter.XY{X: x, Y: v})
	}
	return xys
}

// mergedHistogram merges a variant's histograms of one scenario and phase
// over its repeats.
func mergedHistogram(runs []*results.Run, scenario, phase string) (*hdrhistogram.Histogram, error) {
	acc := results.NewHistogram()
	for _, r := range runs {
		for _, sc := range r.Scenarios {
			if sc.Name != scenario {
				continue
			}
			p, ok := sc.Phases[phase]
			if !ok || p.Count == 0 {
				continue
			}
			h, err := results.DecodeHistogram(p.Histogram)
			if err != nil {
				return nil, fmt.Errorf("run %s scenario %s phase %s: %w", r.ID, scenario, phase, err)
			}
			acc.Merge(h)
		}
	}
	return acc, nil
}

// phasesOf lists the phases measured for a scenario, in the usual order.
func (c *Comparison) phasesOf(scenario string) []string {
	seen := map[string]bool{}
	for _, g := range c.groups {
		for _, r := range g.runs {
			for _, sc := range r.Scenarios {
				if sc.Name != scenario {
					continue
				}
				for ph, p := range sc.Phases {
					if p.Count > 0 {
						seen[ph] = true
					}
				}
			}
		}
	}
	var out []string
	for _, ph := range knownPhases {
		if seen[ph] {
			out = append(out, ph)
			delete(seen, ph)
		}
	}
	var rest []string
	for ph := range seen {
		rest = append(rest, ph)
	}
	sort.Strings(rest)
	return append(out, rest...)
}

// latencyPlots draws, per scenario, one panel per phase: latency against
// percentile, one line per variant (its repeats' histograms merged).
func (c *Comparison) latencyPlots() ([]Plot, error) {
	return c.percentilePlots("latency", "Latency by percentile", "latency", c.phasesOf, mergedHistogram)
}

// dwellPlots draws, per scenario, one panel per side and closing state the
// eBPF tracer measured: the time the kernel kept connections in the state,
// against percentile, one line per variant.
func (c *Comparison) dwellPlots() ([]Plot, error) {
	return c.percentilePlots("dwell", "Kernel time in each closing state by percentile", "time in state", c.dwellKeys, mergedDwell)
}

// dwellKeys lists a scenario's measured "side STATE" dwell keys.
func (c *Comparison) dwellKeys(scenario string) []string {
	seen := map[string]bool{}
	for _, g := range c.groups {
		for _, r := range g.runs {
			if r.KernelEvents == nil {
				continue
			}
			for _, eg := range r.KernelEvents.Groups {
				if eg.Scenario != scenario {
					continue
				}
				for _, st := range closingStates {
					if d, ok := eg.Dwell[st]; ok && d.Count > 0 {
						seen[eg.Side+" "+st] = true
					}
				}
			}
		}
	}
	var out []string
	for _, side := range []string{results.SideClient, results.SideTarget} {
		for _, st := range closingStates {
			if seen[side+" "+st] {
				out = append(out, side+" "+st)
			}
		}
	}
	return out
}

// mergedDwell merges a variant's dwell histograms of one scenario, side and
// state ("side STATE") over its repeats.
func mergedDwell(runs []*results.Run, scenario, key string) (*hdrhistogram.Histogram, error) {
	side, st, _ := strings.Cut(key, " ")
	acc := results.NewHistogram()
	for _, r := range runs {
		if r.KernelEvents == nil {
			continue
		}
		for _, eg := range r.KernelEvents.Groups {
			d, ok := eg.Dwell[st]
			if eg.Scenario != scenario || eg.Side != side || !ok || d.Count == 0 {
				continue
			}
			h, err := results.DecodeHistogram(d.Histogram)
			if err != nil {
				return nil, fmt.Errorf("run %s scenario %s dwell %s: %w", r.ID, scenario, key, err)
			}
			acc.Merge(h)
		}
	}
	return acc, nil
}

// percentilePlots draws, per scenario, one panel per key (a phase, a side
// and state): a value against percentile on HdrHistogram's log axis, one
// line per variant (its repeats' histograms merged).
func (c *Comparison) percentilePlots(name, title, ylabel string, keysOf func(string) []string,
	merged func([]*results.Run, string, string) (*hdrhistogram.Histogram, error)) ([]Plot, error) {
	var out []Plot
	for si, sc := range scenarioOrder(c.groups) {
		keys := keysOf(sc)
		if len(keys) == 0 {
			continue
		}
		hists := make([][]*hdrhistogram.Histogram, len(c.groups))
		var maxV int64
		for vi, g := range c.groups {
			for _, k := range keys {
				h, err := merged(g.runs, sc, k)
				if err != nil {
					return nil, err
				}
				hists[vi] = append(hists[vi], h)
				maxV = max(maxV, h.Max())
			}
		}
		unit, scale := "µs", 1e3
		if maxV >= 2e6 {
			unit, scale = "ms", 1e6
		}
		var panels []*plot.Plot
		for ki, k := range keys {
			p := newPlot(fmt.Sprintf("%s: %s", sc, k), "percentile", ylabel+" ("+unit+")")
			p.X.Tick.Marker = percentileTicks
			p.X.Min = 0
			p.Y.Scale = plot.LogScale{}
			p.Y.Tick.Marker = logTicks{}
			drawn := false
			xmax := 1.0
			for vi := range c.groups {
				xys := percentileCurve(hists[vi][ki], scale)
				if len(xys) == 0 {
					continue
				}
				drawn = true
				xmax = math.Max(xmax, xys[len(xys)-1].X)
				if err := addLine(p, xys, variantColor(vi), false); err != nil {
					return nil, err
				}
			}
			if !drawn {
				continue
			}
			p.X.Max = xmax
			panels = append(panels, p)
		}
		if len(panels) == 0 {
			continue
		}
		out = append(out, figure(fmt.Sprintf("%s-%d-%s", name, si, slug(sc)), title+": "+sc+" (repeats merged)",
			panels, 2, 3*vg.Inch, c.variantLegend(false)))
	}
	return out, nil
}
