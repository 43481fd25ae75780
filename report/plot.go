package report

import (
	"bytes"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/text"
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
	// legend is drawn in a strip above the panels, never over their data.
	legend []legendEntry
}

// legendEntry is one name of a figure's legend with the mark it stands for.
type legendEntry struct {
	name  string
	thumb plot.Thumbnailer
}

// Plots builds the comparison's figures, in the order a reader needs them:
// the headline (rate and latency per variant, with the significance of each
// difference), the kernel figures that explain it (TIME_WAIT reuse, port
// exhaustion, resets), socket states over time with the variants overlaid
// and their repeats as a band, cycles/s and errors/s over time, and latency
// by percentile per scenario and phase (HdrHistogram style).
func (c *Comparison) Plots() ([]Plot, error) {
	var out []Plot
	if p, ok, err := c.headlinePlot(); err != nil {
		return nil, err
	} else if ok {
		out = append(out, p)
	}
	if p, ok, err := c.explainPlot(); err != nil {
		return nil, err
	} else if ok {
		out = append(out, p)
	}
	if p, ok, err := c.statePlot(); err != nil {
		return nil, err
	} else if ok {
		out = append(out, p)
	}
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
	dwell, err := c.dwellPlots()
	if err != nil {
		return nil, err
	}
	return append(out, dwell...), nil
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
	if len(p.legend) > 0 {
		h := drawLegend(dc, p.legend)
		dc = draw.Crop(dc, 0, 0, 0, -h)
	}
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
			if err := results.WriteOutput(path, b.Bytes()); err != nil {
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
	// A little larger than gonum's defaults: pages scale figures down to
	// the window, and a narrow window must still read them.
	p.Title.TextStyle.Font.Size = vg.Points(14)
	for _, ax := range []*plot.Axis{&p.X, &p.Y} {
		ax.Label.TextStyle.Font.Size = vg.Points(13)
		ax.Tick.Label.Font.Size = vg.Points(12)
	}
	p.Add(plotter.NewGrid())
	return p
}

// legendStyle is the legend strip's text.
var legendStyle = text.Style{Font: font.From(plot.DefaultFont, 13), Handler: plot.DefaultTextHandler, Color: color.Black}

// legendThumbWidth is the width of a legend entry's mark.
const legendThumbWidth = 22

// legendLayout places the entries left to right in a strip of width w,
// wrapping to further lines as needed: each entry's offset from the strip's
// top-left corner (y grows downwards), and the strip's height.
func legendLayout(w vg.Length, entries []legendEntry) ([]vg.Point, vg.Length) {
	pad := vg.Millimeter * 3
	lineH := legendStyle.Rectangle("Mg").Max.Y + vg.Millimeter*1.5
	x, y := pad, pad+lineH
	pos := make([]vg.Point, len(entries))
	for i, e := range entries {
		// Browsers draw an SVG's text in their own fonts, often wider than
		// the metrics here: leave room.
		ew := vg.Points(legendThumbWidth) + vg.Millimeter + legendStyle.Width(e.name)*1.2 + pad*2
		if x+ew > w-pad && x > pad {
			x, y = pad, y+lineH
		}
		pos[i] = vg.Point{X: x, Y: y}
		x += ew
	}
	return pos, y + vg.Millimeter
}

// drawLegend draws the entries along the top of c and returns the height
// it used.
func drawLegend(c draw.Canvas, entries []legendEntry) vg.Length {
	pos, h := legendLayout(c.Max.X-c.Min.X, entries)
	lineH := legendStyle.Rectangle("Mg").Max.Y + vg.Millimeter*1.5
	for i, e := range entries {
		x, y := c.Min.X+pos[i].X, c.Max.Y-pos[i].Y
		icon := &draw.Canvas{Canvas: c.Canvas, Rectangle: vg.Rectangle{Min: vg.Point{X: x, Y: y + vg.Millimeter*0.5},
			Max: vg.Point{X: x + vg.Points(legendThumbWidth), Y: y + lineH - vg.Millimeter}}}
		e.thumb.Thumbnail(icon)
		c.FillText(legendStyle, vg.Point{X: x + vg.Points(legendThumbWidth) + vg.Millimeter, Y: y + vg.Millimeter*0.5}, e.name)
	}
	return h
}

// legendHeight is how much a legend strip takes in a figure of width w.
func legendHeight(w vg.Length, entries []legendEntry) vg.Length {
	_, h := legendLayout(w, entries)
	return h
}

// variantLegend is a legend of the variants' colours.
func (c *Comparison) variantLegend(dashed bool) []legendEntry {
	var out []legendEntry
	for i, v := range c.Variants {
		l := &plotter.Line{LineStyle: draw.LineStyle{Color: variantColor(i), Width: vg.Points(2.5)}}
		if dashed {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
		}
		name := v.Name
		if i == c.Baseline {
			name += " (baseline)"
		}
		out = append(out, legendEntry{name: name, thumb: l})
	}
	return out
}

// figure lays panels out in a grid under a legend strip.
func figure(name, title string, panels []*plot.Plot, cols int, panelH vg.Length, legend []legendEntry) Plot {
	const width = 11 * vg.Inch
	grid, rows := tileCols(panels, cols)
	h := vg.Length(rows)*panelH + 4*vg.Millimeter
	if len(legend) > 0 {
		h += legendHeight(width, legend)
	}
	// Whole points, so the SVG states the size exactly.
	h = vg.Points(math.Ceil(h.Points()))
	return Plot{Name: name, Title: title, Width: width, Height: h, grid: grid, legend: legend}
}

// tileCols lays panels out cols per row.
func tileCols(panels []*plot.Plot, cols int) ([][]*plot.Plot, int) {
	cols = max(1, min(cols, len(panels)))
	var grid [][]*plot.Plot
	for i := 0; i < len(panels); i += cols {
		row := make([]*plot.Plot, cols)
		copy(row, panels[i:min(i+cols, len(panels))])
		grid = append(grid, row)
	}
	return grid, len(grid)
}

// countAxis makes a count axis start at 0 and end just above the data; an
// all-zero panel gets 0..1 rather than a range around 0.
func countAxis(p *plot.Plot, hi float64) {
	p.Y.Min = 0
	if hi <= 0 || math.IsNaN(hi) || math.IsInf(hi, 0) {
		p.Y.Max = 1
		p.Y.Tick.Marker = plot.ConstantTicks{{Value: 0, Label: "0"}, {Value: 1, Label: "1"}}
		return
	}
	p.Y.Max = hi * 1.08
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

func addLine(p *plot.Plot, xys plotter.XYs, col color.Color, dashed bool) error {
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
	return nil
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
