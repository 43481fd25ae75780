package report

import (
	"bytes"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/closeload/closeload/results"
)

// PNGDPI is the resolution of PNG plots: a Plot of Width×Height inches is
// Width·PNGDPI × Height·PNGDPI pixels.
const PNGDPI = 96

// Plot is one figure of a comparison, drawn as PNG or SVG.
type Plot struct {
	// Name is the file stem: states-0-tcp_tw_reuse=0, throughput, ...
	Name  string
	Title string
	// Width and Height are the figure's size.
	Width, Height vg.Length

	grid [][]*plot.Plot
}

// state lines drawn in the timeline, in this order, with fixed colours so
// TIME_WAIT looks the same in every variant's figure.
var timelineStates = []string{"TIME_WAIT", "FIN_WAIT2", "CLOSE_WAIT", "ESTABLISHED", "FIN_WAIT1", "CLOSING", "LAST_ACK", "SYN_SENT", "SYN_RECV"}

// Plots builds the comparison's figures: socket states over time per
// variant, cycles/s and errors/s over time, latency by percentile per
// scenario and phase (HdrHistogram style), and the headline figures per
// variant as bars.
func (c *Comparison) Plots() ([]Plot, error) {
	var out []Plot
	states, err := c.statePlots()
	if err != nil {
		return nil, err
	}
	out = append(out, states...)
	if p, ok, err := c.throughputPlot(); err != nil {
		return nil, err
	} else if ok {
		out = append(out, p)
	}
	lat, err := c.latencyPlots()
	if err != nil {
		return nil, err
	}
	out = append(out, lat...)
	if p, ok, err := c.headlinePlot(); err != nil {
		return nil, err
	} else if ok {
		out = append(out, p)
	}
	return out, nil
}

// WritePNG draws the figure as a PNG image.
func (p Plot) WritePNG(w io.Writer) error {
	img := vgimg.NewWith(vgimg.UseWH(p.Width, p.Height), vgimg.UseDPI(PNGDPI))
	p.draw(draw.New(img))
	_, err := vgimg.PngCanvas{Canvas: img}.WriteTo(w)
	return err
}

// WriteSVG draws the figure as an SVG document.
func (p Plot) WriteSVG(w io.Writer) error {
	svg := vgsvg.New(p.Width, p.Height)
	p.draw(draw.New(svg))
	_, err := svg.WriteTo(w)
	return err
}

func (p Plot) draw(dc draw.Canvas) {
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	rows, cols := len(p.grid), len(p.grid[0])
	if rows == 1 && cols == 1 {
		p.grid[0][0].Draw(dc)
		return
	}
	t := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Millimeter * 6, PadY: vg.Millimeter * 8,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(p.grid, t, dc)
	for j := range p.grid {
		for i, pl := range p.grid[j] {
			if pl != nil {
				pl.Draw(canvases[j][i])
			}
		}
	}
}

// WritePlots writes every figure as NAME.png and NAME.svg into dir and
// returns the paths written.
func WritePlots(dir string, c *Comparison) ([]string, error) {
	plots, err := c.Plots()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	for _, p := range plots {
		for _, f := range []struct {
			ext   string
			write func(io.Writer) error
		}{{"png", p.WritePNG}, {"svg", p.WriteSVG}} {
			var b bytes.Buffer
			if err := f.write(&b); err != nil {
				return paths, fmt.Errorf("plot %s: %w", p.Name, err)
			}
			path := filepath.Join(dir, p.Name+"."+f.ext)
			if err := results.WriteFileAtomic(path, b.Bytes()); err != nil {
				return paths, err
			}
			paths = append(paths, path)
		}
	}
	return paths, nil
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Y.Tick.Marker = countTicks{}
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	return p
}

// countTicks are gonum's default ticks labelled like the tables: 25k, not
// 25000.00.
type countTicks struct{}

// Ticks implements plot.Ticker.
func (countTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = formatCount(ticks[i].Value)
		}
	}
	return ticks
}

// logTicks mark every decade, and 2 and 5 within it when the axis spans
// few decades, so a narrow log axis still has labels.
type logTicks struct{}

// Ticks implements plot.Ticker.
func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	if lo <= 0 || hi <= 0 {
		return plot.DefaultTicks{}.Ticks(lo, hi)
	}
	d0, d1 := int(math.Floor(math.Log10(lo))), int(math.Ceil(math.Log10(hi)))
	dense := d1-d0 <= 2
	var ticks []plot.Tick
	for d := d0; d <= d1; d++ {
		base := math.Pow10(d)
		for i := 1; i <= 9; i++ {
			v := base * float64(i)
			if v < lo*0.999 || v > hi*1.001 {
				continue
			}
			t := plot.Tick{Value: v}
			if i == 1 || dense && (i == 2 || i == 5) {
				t.Label = formatCount(v)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}

func variantColor(i int) color.Color { return plotutil.Color(i) }

func addLine(p *plot.Plot, xys plotter.XYs, name string, col color.Color, dashed bool) error {
	if len(xys) == 0 {
		return nil
	}
	l, err := plotter.NewLine(xys)
	if err != nil {
		return err
	}
	l.Color = col
	l.Width = vg.Points(1.5)
	if dashed {
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
	}
	p.Add(l)
	if name != "" {
		p.Legend.Add(name, l)
	}
	return nil
}

// representative picks the repeat whose cycles/s is the median of the
// variant's, so a timeline shows a typical run rather than the first.
func representative(runs []*results.Run) (*results.Run, int) {
	idx := make([]int, len(runs))
	for i := range idx {
		idx[i] = i
	}
	rate := func(r *results.Run) float64 {
		if r.Totals.Rate > 0 {
			return r.Totals.Rate
		}
		return float64(r.Totals.Cycles)
	}
	sort.SliceStable(idx, func(a, b int) bool { return rate(runs[idx[a]]) < rate(runs[idx[b]]) })
	i := idx[(len(idx)-1)/2]
	return runs[i], i
}

func slug(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '=', r == '-':
			return r
		}
		return '_'
	}, s)
}

// statePlots draws one socket-state timeline per variant, on a common
// y-axis so the variants' heights compare at a glance.
func (c *Comparison) statePlots() ([]Plot, error) {
	var out []Plot
	var ymax float64
	type prepared struct {
		p    *plot.Plot
		name string
	}
	var preps []prepared
	for vi, g := range c.groups {
		r, ri := representative(g.runs)
		if err := g.loadSeries(ri); err != nil {
			return nil, err
		}
		if len(r.Series) == 0 {
			continue
		}
		title := fmt.Sprintf("Socket states: %s (repeat %d of %d)", g.name, ri+1, len(g.runs))
		p := newPlot(title, "seconds", "sockets")
		for si, st := range timelineStates {
			var xys plotter.XYs
			nonzero := false
			for _, s := range r.Series {
				if slices.Contains(s.Missing, "states") {
					continue // not counted in this sample (throttled or failed)
				}
				v := float64(s.States[st].Total)
				nonzero = nonzero || v > 0
				ymax = math.Max(ymax, v)
				xys = append(xys, plotter.XY{X: s.Elapsed, Y: v})
			}
			if !nonzero {
				continue
			}
			if err := addLine(p, xys, st, plotutil.Color(si), false); err != nil {
				return nil, err
			}
			if st == "FIN_WAIT2" {
				var orph plotter.XYs
				have := false
				for _, s := range r.Series {
					if slices.Contains(s.Missing, "states") {
						continue
					}
					v := float64(s.States[st].Orphaned)
					have = have || v > 0
					orph = append(orph, plotter.XY{X: s.Elapsed, Y: v})
				}
				if have {
					if err := addLine(p, orph, "FIN_WAIT2 orphaned", plotutil.Color(si), true); err != nil {
						return nil, err
					}
				}
			}
		}
		preps = append(preps, prepared{p, fmt.Sprintf("states-%d-%s", vi, slug(g.name))})
	}
	for _, pr := range preps {
		// Head room above the highest line for the legend.
		pr.p.Y.Min, pr.p.Y.Max = 0, math.Max(1, ymax*1.4)
		out = append(out, Plot{Name: pr.name, Title: pr.p.Title.Text, Width: 8 * vg.Inch, Height: 4 * vg.Inch, grid: [][]*plot.Plot{{pr.p}}})
	}
	return out, nil
}

// rates turns a series into per-second cycles and errors. A sample that
// closes a short, partial interval (the last one, taken as the run stops)
// is left out: its rate is noise.
func rates(r *results.Run) (cycles, errs plotter.XYs) {
	prev := 0.0
	iv := r.Config.Interval.Seconds()
	for i, s := range r.Series {
		dt := s.Elapsed - prev
		if i == 0 && dt <= 0 {
			dt = iv
		}
		prev = s.Elapsed
		if dt <= 0 || iv > 0 && dt < iv/2 {
			continue
		}
		cycles = append(cycles, plotter.XY{X: s.Elapsed, Y: float64(s.Cycles) / dt})
		errs = append(errs, plotter.XY{X: s.Elapsed, Y: float64(s.Errors) / dt})
	}
	return cycles, errs
}

// throughputPlot draws cycles/s over time (top) and errors/s (bottom), one
// line per variant.
func (c *Comparison) throughputPlot() (Plot, bool, error) {
	top := newPlot("Cycles per second", "seconds", "cycles/s")
	bottom := newPlot("Errors per second", "seconds", "errors/s")
	have := false
	for vi, g := range c.groups {
		r, ri := representative(g.runs)
		if err := g.loadSeries(ri); err != nil {
			return Plot{}, false, err
		}
		if len(r.Series) == 0 {
			continue
		}
		have = true
		cy, er := rates(r)
		if err := addLine(top, cy, g.name, variantColor(vi), false); err != nil {
			return Plot{}, false, err
		}
		if err := addLine(bottom, er, g.name, variantColor(vi), false); err != nil {
			return Plot{}, false, err
		}
	}
	if !have {
		return Plot{}, false, nil
	}
	// Head room above the highest line for the legend.
	for _, p := range []*plot.Plot{top, bottom} {
		p.Y.Min = 0
		p.Y.Max = math.Max(1, p.Y.Max*1.4)
	}
	return Plot{Name: "throughput", Title: "Cycles and errors per second", Width: 8 * vg.Inch, Height: 6 * vg.Inch,
		grid: [][]*plot.Plot{{top}, {bottom}}}, true, nil
}

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
	var out []Plot
	for si, sc := range scenarioOrder(c.groups) {
		phases := c.phasesOf(sc)
		if len(phases) == 0 {
			continue
		}
		hists := make([][]*hdrhistogram.Histogram, len(c.groups))
		var maxV int64
		for vi, g := range c.groups {
			for _, ph := range phases {
				h, err := mergedHistogram(g.runs, sc, ph)
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
		for pi, ph := range phases {
			p := newPlot(fmt.Sprintf("%s: %s", sc, ph), "percentile", "latency ("+unit+")")
			p.X.Tick.Marker = percentileTicks
			p.X.Min = 0
			p.Y.Scale = plot.LogScale{}
			p.Y.Tick.Marker = logTicks{}
			p.Legend.Top, p.Legend.Left = true, true
			drawn := false
			xmax := 1.0
			for vi, g := range c.groups {
				xys := percentileCurve(hists[vi][pi], scale)
				if len(xys) == 0 {
					continue
				}
				drawn = true
				xmax = math.Max(xmax, xys[len(xys)-1].X)
				if err := addLine(p, xys, g.name, variantColor(vi), false); err != nil {
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
		grid, h := tile(panels)
		out = append(out, Plot{Name: fmt.Sprintf("latency-%d-%s", si, slug(sc)), Title: "Latency by percentile: " + sc,
			Width: 8 * vg.Inch, Height: h, grid: grid})
	}
	return out, nil
}

// tile lays panels out two per row; each row is 3 inches high.
func tile(panels []*plot.Plot) ([][]*plot.Plot, vg.Length) {
	if len(panels) == 1 {
		return [][]*plot.Plot{{panels[0]}}, 4 * vg.Inch
	}
	var grid [][]*plot.Plot
	for i := 0; i < len(panels); i += 2 {
		row := []*plot.Plot{panels[i], nil}
		if i+1 < len(panels) {
			row[1] = panels[i+1]
		}
		grid = append(grid, row)
	}
	return grid, vg.Length(len(grid)) * 3 * vg.Inch
}

// headlineMetrics are the bars of the headline figure: the table row they
// come from, preferring the run-wide table.
var headlineMetrics = []struct{ metric, title string }{
	{"cycles/s", "cycles/s"},
	{"total p99", "total p99"},
	{"peak TIME_WAIT", "peak TIME_WAIT"},
	{"errors", "errors"},
}

// findRow returns the run-wide row of a metric if there is one, else the
// first scenario's.
func (c *Comparison) findRow(metric string) (Row, bool) {
	var found Row
	ok := false
	for _, t := range c.Tables {
		for _, r := range t.Rows {
			if r.Metric != metric {
				continue
			}
			if t.Scenario == "all" {
				return r, true
			}
			if !ok {
				found, ok = r, true
			}
		}
	}
	return found, ok
}

// errPoints are bar tops with the range of the repeats as error bars.
type errPoints struct {
	plotter.XYs
	plotter.YErrors
}

// headlinePlot draws the headline figures per variant as bars: the median
// of the repeats, with their range as an error bar.
func (c *Comparison) headlinePlot() (Plot, bool, error) {
	var panels []*plot.Plot
	names := make([]string, len(c.Variants))
	for i, v := range c.Variants {
		names[i] = v.Name
	}
	for _, hm := range headlineMetrics {
		row, ok := c.findRow(hm.metric)
		if !ok {
			continue
		}
		scale, unit := 1.0, row.Unit
		if row.Unit == "ns" {
			scale, unit = 1e6, "ms"
		}
		p := newPlot(hm.title, "", unit)
		p.Legend = plot.NewLegend()
		var pts errPoints
		for vi, cell := range row.Cells {
			if cell.N == 0 {
				continue
			}
			bar, err := plotter.NewBarChart(plotter.Values{cell.Median / scale}, vg.Points(36))
			if err != nil {
				return Plot{}, false, err
			}
			bar.XMin = float64(vi)
			bar.Color = variantColor(vi)
			bar.LineStyle.Width = 0
			p.Add(bar)
			lo, hi := minMax(cell.Values)
			pts.XYs = append(pts.XYs, plotter.XY{X: float64(vi), Y: cell.Median / scale})
			pts.YErrors = append(pts.YErrors, struct{ Low, High float64 }{(cell.Median - lo) / scale, (hi - cell.Median) / scale})
		}
		if len(pts.XYs) == 0 {
			continue
		}
		eb, err := plotter.NewYErrorBars(pts)
		if err != nil {
			return Plot{}, false, err
		}
		p.Add(eb)
		p.NominalX(names...)
		p.Y.Min = 0
		panels = append(panels, p)
	}
	if len(panels) == 0 {
		return Plot{}, false, nil
	}
	grid, h := tile(panels)
	return Plot{Name: "headline", Title: "Headline figures per variant (median, bars: range of repeats)", Width: 8 * vg.Inch, Height: h, grid: grid}, true, nil
}

func minMax(vs []float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, v := range vs {
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	return lo, hi
}
