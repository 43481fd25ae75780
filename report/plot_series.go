package report

import (
	"image/color"
	"math"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// timelineStates are the socket states drawn over time, in this order; a
// state no variant ever had is left out.
var timelineStates = []string{"TIME_WAIT", "FIN_WAIT2", "CLOSE_WAIT", "ESTABLISHED", "FIN_WAIT1", "CLOSING", "LAST_ACK", "SYN_SENT", "SYN_RECV"}

// MaxSeriesPoints bounds the points of one line: a long run's series is
// reduced to this many time buckets before it is drawn, so a record of
// hundreds of thousands of samples plots in about the time of a short one.
// A bucket keeps the highest socket count of its samples (peaks survive)
// and the mean rate over its time.
const MaxSeriesPoints = 400

// band is a variant's line over time: at each point the median of its
// repeats, and their lowest and highest value.
type band struct {
	x, mid, lo, hi []float64
	repeats        int
}

// bucketing maps sample times to buckets shared by every repeat of every
// variant, so repeats line up and lines stay below MaxSeriesPoints.
type bucketing struct {
	width float64
	n     int
}

func newBucketing(runs [][]plotRun) bucketing {
	var tmax, iv float64
	for _, rs := range runs {
		for _, r := range rs {
			if n := len(r.samples); n > 0 {
				tmax = math.Max(tmax, r.samples[n-1].Elapsed)
			}
			if d := r.interval; d > 0 && (iv == 0 || d < iv) {
				iv = d
			}
		}
	}
	if iv == 0 {
		iv = 1
	}
	w := math.Max(iv, tmax/MaxSeriesPoints)
	return bucketing{width: w, n: int(math.Round(tmax/w)) + 1}
}

func (b bucketing) index(t float64) int {
	return min(max(int(math.Round(t/b.width)), 0), b.n-1)
}

// repeatValues is one repeat's value per bucket (NaN: no sample there)
// and the mean sample time of each bucket.
type repeatValues struct {
	v, t []float64
}

// stateValues buckets one repeat's count of a state, keeping each bucket's
// highest count. Samples whose states were not counted are skipped.
func (b bucketing) stateValues(r plotRun, get func(*plotSample) (float64, bool)) repeatValues {
	rv := repeatValues{v: nanSlice(b.n), t: make([]float64, b.n)}
	cnt := make([]int, b.n)
	for k := range r.samples {
		s := &r.samples[k]
		if s.NoStates {
			continue
		}
		v, ok := get(s)
		if !ok {
			continue
		}
		i := b.index(s.Elapsed)
		if math.IsNaN(rv.v[i]) || v > rv.v[i] {
			rv.v[i] = v
		}
		rv.t[i] += s.Elapsed
		cnt[i]++
	}
	for i := range cnt {
		if cnt[i] > 0 {
			rv.t[i] /= float64(cnt[i])
		}
	}
	return rv
}

// rateValues buckets one repeat's completions and errors into rates per
// second over each bucket's time. A sample that closes a short, partial
// interval (the last one, taken as the run stops) is left out: its rate is
// noise.
func (b bucketing) rateValues(r plotRun) (cycles, errs repeatValues) {
	cycles = repeatValues{v: nanSlice(b.n), t: make([]float64, b.n)}
	errs = repeatValues{v: nanSlice(b.n), t: cycles.t}
	var cy, er, dts, ts []float64 = make([]float64, b.n), make([]float64, b.n), make([]float64, b.n), make([]float64, b.n)
	cnt := make([]int, b.n)
	prev := 0.0
	iv := r.interval
	for i, s := range r.samples {
		dt := s.Elapsed - prev
		if i == 0 && dt <= 0 {
			dt = iv
		}
		prev = s.Elapsed
		if dt <= 0 || iv > 0 && dt < iv/2 {
			continue
		}
		k := b.index(s.Elapsed)
		cy[k] += float64(s.Cycles)
		er[k] += float64(s.Errors)
		dts[k] += dt
		ts[k] += s.Elapsed
		cnt[k]++
	}
	for k := range cnt {
		if cnt[k] == 0 {
			continue
		}
		cycles.v[k], errs.v[k] = cy[k]/dts[k], er[k]/dts[k]
		cycles.t[k] = ts[k] / float64(cnt[k])
	}
	return cycles, errs
}

func nanSlice(n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = math.NaN()
	}
	return s
}

// combine turns repeats' bucket values into a band.
func combine(reps []repeatValues) band {
	if len(reps) == 0 {
		return band{}
	}
	bd := band{repeats: len(reps)}
	vals := make([]float64, 0, len(reps))
	for i := range reps[0].v {
		vals = vals[:0]
		t, nt := 0.0, 0
		for _, r := range reps {
			if !math.IsNaN(r.v[i]) {
				vals = append(vals, r.v[i])
				t += r.t[i]
				nt++
			}
		}
		if len(vals) == 0 {
			continue
		}
		sort.Float64s(vals)
		mid := vals[len(vals)/2]
		if len(vals)%2 == 0 {
			mid = (vals[len(vals)/2-1] + vals[len(vals)/2]) / 2
		}
		bd.x = append(bd.x, t/float64(nt))
		bd.mid = append(bd.mid, mid)
		bd.lo = append(bd.lo, vals[0])
		bd.hi = append(bd.hi, vals[len(vals)-1])
	}
	return bd
}

func (bd band) max() float64 {
	m := 0.0
	for _, v := range bd.hi {
		m = math.Max(m, v)
	}
	return m
}

func (bd band) nonzero() bool { return bd.max() > 0 }

// draw adds the band (repeats' range, translucent) and its median line.
func (bd band) draw(p *plot.Plot, col color.Color, dashed bool) error {
	if len(bd.x) == 0 {
		return nil
	}
	if bd.repeats > 1 && len(bd.x) > 1 {
		poly := make(plotter.XYs, 0, 2*len(bd.x))
		for i := range bd.x {
			poly = append(poly, plotter.XY{X: bd.x[i], Y: bd.hi[i]})
		}
		for i := len(bd.x) - 1; i >= 0; i-- {
			poly = append(poly, plotter.XY{X: bd.x[i], Y: bd.lo[i]})
		}
		pg, err := plotter.NewPolygon(poly)
		if err != nil {
			return err
		}
		r, g, b, _ := col.RGBA()
		pg.Color = color.NRGBA{R: uint8(r >> 8), G: uint8(g >> 8), B: uint8(b >> 8), A: 0x38}
		pg.LineStyle.Width = 0
		p.Add(pg)
	}
	xys := make(plotter.XYs, len(bd.x))
	for i := range bd.x {
		xys[i] = plotter.XY{X: bd.x[i], Y: bd.mid[i]}
	}
	if err := addLine(p, xys, col, dashed); err != nil {
		return err
	}
	if len(xys) == 1 {
		sc, err := plotter.NewScatter(xys)
		if err != nil {
			return err
		}
		sc.Color = col
		p.Add(sc)
	}
	return nil
}

// timeAxis makes the x axis span the data, not more.
func timeAxis(p *plot.Plot, lo, hi float64) {
	if hi <= lo {
		hi = lo + 1
	}
	p.X.Min, p.X.Max = lo, hi
}

// statePlot draws one panel per socket state over time, every variant in
// it (median of its repeats as a line, their range as a band), on the
// time axis the samples cover. FIN_WAIT2's orphans are dashed. When the
// records split states by side, each state gets a panel per side (client
// left, target right), so TIME_WAIT held by a server is not read as the
// client's.
func (c *Comparison) statePlot() (Plot, bool, error) {
	runs, have, err := c.plotRuns()
	if err != nil || !have {
		return Plot{}, false, err
	}
	bk := newBucketing(runs)
	sides := sidesOf(runs)
	views := []string{""}
	if len(sides) > 0 {
		views = sides
	}
	var panels []*plot.Plot
	orphans := false
	for _, st := range timelineStates {
		row := make([]*plot.Plot, len(views))
		anyView := false
		for wi, side := range views {
			pick := func(s *plotSample) (*plotStates, bool) {
				if side == "" {
					return &s.States, true
				}
				ss, ok := s.Sides[side]
				return &ss, ok
			}
			p, nonzero, orph, err := c.statePanel(runs, bk, st, side, pick)
			if err != nil {
				return Plot{}, false, err
			}
			row[wi] = p
			anyView = anyView || nonzero
			orphans = orphans || orph
		}
		if anyView {
			panels = append(panels, row...)
		}
	}
	if len(panels) == 0 {
		return Plot{}, false, nil
	}
	legend := c.variantLegend(false)
	if orphans {
		legend = append(legend, legendEntry{name: "FIN_WAIT2 orphaned (dashed)", thumb: dashedGrey()})
	}
	legend = append(legend, bandLegend(c.groups)...)
	title := "Socket states over time (line: median of the repeats; band: their range)"
	if len(sides) > 0 {
		title = "Socket states over time by side: " + strings.Join(sides, ", ") + " (line: median of the repeats; band: their range)"
	}
	return figure("states", title, panels, 2, 3*vg.Inch, legend), true, nil
}

// sidesOf lists the sides the samples split their states by, in draw order.
func sidesOf(runs [][]plotRun) []string {
	seen := map[string]bool{}
	for _, rs := range runs {
		for _, r := range rs {
			for i := range r.samples {
				for side := range r.samples[i].Sides {
					seen[side] = true
				}
			}
		}
	}
	var out []string
	for _, s := range sideOrder {
		if seen[s] {
			out = append(out, s)
			delete(seen, s)
		}
	}
	rest := make([]string, 0, len(seen))
	for s := range seen {
		rest = append(rest, s)
	}
	sort.Strings(rest)
	return append(out, rest...)
}

// statePanel draws one state (on one side, if side is set) for every
// variant; nonzero says whether any variant ever had a socket in it.
func (c *Comparison) statePanel(runs [][]plotRun, bk bucketing, st, side string, pick func(*plotSample) (*plotStates, bool)) (*plot.Plot, bool, bool, error) {
	bands := make([]band, len(runs))
	orph := make([]band, len(runs))
	nonzero, orphans := false, false
	tlo, thi := math.Inf(1), math.Inf(-1)
	for vi, rs := range runs {
		var reps, oreps []repeatValues
		for _, r := range rs {
			if len(r.samples) == 0 {
				continue
			}
			reps = append(reps, bk.stateValues(r, func(s *plotSample) (float64, bool) {
				ss, ok := pick(s)
				return float64(ss.get(st).Total), ok
			}))
			if st == "FIN_WAIT2" {
				oreps = append(oreps, bk.stateValues(r, func(s *plotSample) (float64, bool) {
					ss, ok := pick(s)
					return float64(ss.FinWait2.Orphaned), ok
				}))
			}
		}
		bands[vi], orph[vi] = combine(reps), combine(oreps)
		nonzero = nonzero || bands[vi].nonzero()
		if len(bands[vi].x) > 0 {
			tlo, thi = math.Min(tlo, bands[vi].x[0]), math.Max(thi, bands[vi].x[len(bands[vi].x)-1])
		}
	}
	title := st
	if side != "" {
		title += " on the " + side + " side"
	}
	p := newPlot(title, "seconds", "sockets")
	hi := 0.0
	for vi, bd := range bands {
		if err := bd.draw(p, variantColor(vi), false); err != nil {
			return nil, false, false, err
		}
		hi = math.Max(hi, bd.max())
	}
	for vi, bd := range orph {
		if bd.nonzero() {
			orphans = true
			if err := bd.draw(p, variantColor(vi), true); err != nil {
				return nil, false, false, err
			}
		}
	}
	countAxis(p, hi)
	if !math.IsInf(tlo, 0) {
		timeAxis(p, tlo, thi)
	}
	return p, nonzero, orphans, nil
}

// bandLegend explains the band when some variant has repeats.
func bandLegend(groups []*variantGroup) []legendEntry {
	for _, g := range groups {
		if len(g.runs) > 1 {
			pg, _ := plotter.NewPolygon(plotter.XYs{{X: 0, Y: 0}, {X: 1, Y: 0}, {X: 1, Y: 1}})
			pg.Color = color.NRGBA{R: 0x80, G: 0x80, B: 0x80, A: 0x50}
			pg.LineStyle.Width = 0
			return []legendEntry{{name: "range of the repeats", thumb: pg}}
		}
	}
	return nil
}

func dashedGrey() plot.Thumbnailer {
	l := &plotter.Line{}
	l.Color = color.Gray{Y: 0x60}
	l.Width = vg.Points(1.5)
	l.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
	return l
}

// throughputPlot draws cycles/s over time and errors/s, every variant in
// each panel (median of its repeats, their range as a band).
func (c *Comparison) throughputPlot() (Plot, bool, error) {
	runs, have, err := c.plotRuns()
	if err != nil || !have {
		return Plot{}, false, err
	}
	bk := newBucketing(runs)
	top := newPlot("Cycles per second", "seconds", "cycles/s")
	bottom := newPlot("Errors per second", "seconds", "errors/s")
	var hiC, hiE float64
	tlo, thi := math.Inf(1), math.Inf(-1)
	for vi, rs := range runs {
		var cys, ers []repeatValues
		for _, r := range rs {
			if len(r.samples) == 0 {
				continue
			}
			cy, er := bk.rateValues(r)
			cys, ers = append(cys, cy), append(ers, er)
		}
		bc, be := combine(cys), combine(ers)
		if err := bc.draw(top, variantColor(vi), false); err != nil {
			return Plot{}, false, err
		}
		if err := be.draw(bottom, variantColor(vi), false); err != nil {
			return Plot{}, false, err
		}
		hiC, hiE = math.Max(hiC, bc.max()), math.Max(hiE, be.max())
		if len(bc.x) > 0 {
			tlo, thi = math.Min(tlo, bc.x[0]), math.Max(thi, bc.x[len(bc.x)-1])
		}
	}
	if math.IsInf(tlo, 0) {
		return Plot{}, false, nil
	}
	countAxis(top, hiC)
	countAxis(bottom, hiE)
	timeAxis(top, tlo, thi)
	timeAxis(bottom, tlo, thi)
	legend := append(c.variantLegend(false), bandLegend(c.groups)...)
	return figure("throughput", "Cycles and errors per second over time (line: median of the repeats; band: their range)",
		[]*plot.Plot{top, bottom}, 2, 3*vg.Inch, legend), true, nil
}
