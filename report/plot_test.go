package report

import (
	"bytes"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"gonum.org/v1/plot/vg"

	"github.com/closeload/closeload/results"
)

// TestPlots checks every figure is a non-empty image of its stated size,
// as PNG and as SVG.
func TestPlots(t *testing.T) {
	for _, gc := range goldenCases {
		t.Run(gc.name, func(t *testing.T) {
			c := loadCompare(t, gc.args, gc.opts)
			plots, err := c.Plots()
			if err != nil {
				t.Fatal(err)
			}
			kinds := map[string]int{}
			for _, p := range plots {
				kinds[regexp.MustCompile(`^[a-z]+`).FindString(p.Name)]++
				var b bytes.Buffer
				if err := p.WritePNG(&b); err != nil {
					t.Fatal(err)
				}
				img, err := png.Decode(&b)
				if err != nil {
					t.Fatalf("%s: %v", p.Name, err)
				}
				wantW, wantH := int(float64(p.Width/vg.Inch)*PNGDPI+0.5), int(float64(p.Height/vg.Inch)*PNGDPI+0.5)
				if got := img.Bounds().Size(); got.X != wantW || got.Y != wantH {
					t.Errorf("%s: PNG %v, want %dx%d", p.Name, got, wantW, wantH)
				}
				if n := inkPixels(img); n < wantW*wantH/100 {
					t.Errorf("%s: only %d non-white pixels: empty plot?", p.Name, n)
				}
				b.Reset()
				if err := p.WriteSVG(&b); err != nil {
					t.Fatal(err)
				}
				m := regexp.MustCompile(`<svg width="([0-9.]+)pt" height="([0-9.]+)pt"`).FindSubmatch(b.Bytes())
				if m == nil {
					t.Fatalf("%s: no <svg> header", p.Name)
				}
				w, _ := strconv.ParseFloat(string(m[1]), 64)
				h, _ := strconv.ParseFloat(string(m[2]), 64)
				if w != p.Width.Points() || h != p.Height.Points() {
					t.Errorf("%s: SVG %gx%gpt, want %gx%g", p.Name, w, h, p.Width.Points(), p.Height.Points())
				}
				if n := bytes.Count(b.Bytes(), []byte("<path")); n < 20 {
					t.Errorf("%s: SVG has only %d paths", p.Name, n)
				}
			}
			if len(plots) == 0 || plots[0].Name != "headline" {
				t.Errorf("first figure is not the headline: %v", kinds)
			}
			want := map[string]int{"headline": 1, "kernel": 1, "states": 1, "throughput": 1, "latency": len(scenarioOrder(c.groups))}
			for k, n := range want {
				if kinds[k] != n {
					t.Errorf("%d %s plots, want %d (all: %v)", kinds[k], k, n, kinds)
				}
			}
			if os.Getenv("CLOSELOAD_KEEP_PLOTS") != "" {
				dir := filepath.Join(os.Getenv("CLOSELOAD_KEEP_PLOTS"), gc.name)
				if _, err := WritePlots(dir, c); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func inkPixels(img interface {
	Bounds() image.Rectangle
	At(x, y int) color.Color
}) int {
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bb, _ := img.At(x, y).RGBA()
			if r < 0xf000 || g < 0xf000 || bb < 0xf000 {
				n++
			}
		}
	}
	return n
}

// TestShortRunDrawsALine checks a real 2 s run sampled every 250 ms draws
// its states as a line of more than 3 points whose time axis starts at the
// first sample, not at 0, and that a panel of nothing but zeros (errors/s of
// a run without errors) gets a 0..1 axis.
func TestShortRunDrawsALine(t *testing.T) {
	c := loadCompare(t, []string{"../results/baseline/client-halfclose"}, Options{})
	runs, _, err := c.plotRuns()
	if err != nil {
		t.Fatal(err)
	}
	bk := newBucketing(runs)
	var reps []repeatValues
	for _, r := range runs[0] {
		reps = append(reps, bk.stateValues(r, func(s *plotSample) (float64, bool) { return float64(s.States.TimeWait.Total), true }))
	}
	bd := combine(reps)
	if len(bd.x) <= 3 {
		t.Errorf("TIME_WAIT of a 2 s run: %d points, want more than 3", len(bd.x))
	}
	p, ok, err := c.statePlot()
	if err != nil || !ok {
		t.Fatalf("state plot: %v, %v", ok, err)
	}
	first := runs[0][0].samples[0].Elapsed
	if x := p.grid[0][0].X.Min; x <= 0 || x > 2*first {
		t.Errorf("time axis starts at %g, want where the samples start (about %g)", x, first)
	}
	tp, ok, err := c.throughputPlot()
	if err != nil || !ok {
		t.Fatalf("throughput plot: %v, %v", ok, err)
	}
	errs := tp.grid[0][1]
	if errs.Y.Min != 0 || errs.Y.Max != 1 {
		t.Errorf("all-zero errors/s panel has axis %g..%g, want 0..1", errs.Y.Min, errs.Y.Max)
	}
}

// TestLongSeriesDownsampled stretches a real record's series to 200,000
// samples: every line is drawn from at most MaxSeriesPoints points, and
// the highest TIME_WAIT count survives the reduction.
func TestLongSeriesDownsampled(t *testing.T) {
	c := loadCompare(t, []string{"../results/baseline/client-halfclose/r0.json"}, Options{})
	if err := c.groups[0].loadSeries(0); err != nil {
		t.Fatal(err)
	}
	r := c.groups[0].runs[0]
	orig := r.Series
	iv := r.Config.Interval.Seconds()
	var peak uint64
	long := make([]results.Sample, 0, 200_000)
	for i := range 200_000 {
		s := orig[i%len(orig)]
		s.Elapsed = float64(i+1) * iv
		long = append(long, s)
		peak = max(peak, s.States["TIME_WAIT"].Total)
	}
	r.Series = long
	runs, _, err := c.plotRuns()
	if err != nil {
		t.Fatal(err)
	}
	bk := newBucketing(runs)
	if bk.n > MaxSeriesPoints+1 {
		t.Errorf("%d buckets for 200k samples, want at most %d", bk.n, MaxSeriesPoints+1)
	}
	bd := combine([]repeatValues{bk.stateValues(runs[0][0], func(s *plotSample) (float64, bool) { return float64(s.States.TimeWait.Total), true })})
	if len(bd.x) > MaxSeriesPoints+1 || len(bd.x) < MaxSeriesPoints/2 {
		t.Errorf("line of %d points, want about %d", len(bd.x), MaxSeriesPoints)
	}
	if got := bd.max(); got != float64(peak) {
		t.Errorf("peak TIME_WAIT after reduction %g, want %d", got, peak)
	}
}

// TestStatesBySide gives a real record's samples the client/target split
// that collectors which know the sides write (here: every socket on the
// client side), and checks each state gets a panel per side, client left.
func TestStatesBySide(t *testing.T) {
	data, err := os.ReadFile("../results/baseline/client-halfclose/r0.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	for _, s := range doc["series"].([]any) {
		smp := s.(map[string]any)
		smp["sides"] = map[string]any{"client": smp["states"], "target": map[string]any{}}
	}
	data, err = json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sides.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	c := loadCompare(t, []string{path}, Options{})
	p, ok, err := c.statePlot()
	if err != nil || !ok {
		t.Fatalf("state plot: %v, %v", ok, err)
	}
	if !strings.Contains(p.Title, "by side") {
		t.Errorf("title %q does not say the states are by side", p.Title)
	}
	for _, row := range p.grid {
		if len(row) != 2 || row[0] == nil || row[1] == nil {
			t.Fatalf("row of %d panels, want client and target", len(row))
		}
		l, r := row[0].Title.Text, row[1].Title.Text
		if !strings.HasSuffix(l, "on the client side") || !strings.HasSuffix(r, "on the target side") ||
			strings.TrimSuffix(l, " on the client side") != strings.TrimSuffix(r, " on the target side") {
			t.Errorf("row %q | %q, want one state, client then target", l, r)
		}
		if row[1].Y.Max != 1 {
			t.Errorf("%s: an empty side's panel has axis ..%g, want 0..1", r, row[1].Y.Max)
		}
	}
}

// TestDwellPlots draws the kernel's time in each closing state from two real
// records of `closeload matrix --sysctl net.ipv4.tcp_fin_timeout=60,2 -s
// orphan-finwait2` made with the eBPF tracer: one panel per side and state
// it measured, one line per variant.
func TestDwellPlots(t *testing.T) {
	c := loadCompare(t, []string{"testdata/dwell"}, Options{})
	plots, err := c.Plots()
	if err != nil {
		t.Fatal(err)
	}
	var dwell []Plot
	for _, p := range plots {
		if strings.HasPrefix(p.Name, "dwell-") {
			dwell = append(dwell, p)
		}
	}
	if len(dwell) != 1 || !strings.Contains(dwell[0].Title, "orphan-finwait2") {
		t.Fatalf("dwell figures %v, want one for orphan-finwait2", dwell)
	}
	var b bytes.Buffer
	if err := dwell[0].WritePNG(&b); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&b)
	if err != nil {
		t.Fatal(err)
	}
	if n := inkPixels(img); n < img.Bounds().Dx()*img.Bounds().Dy()/100 {
		t.Errorf("dwell figure has %d inked pixels: empty?", n)
	}
	for _, key := range []string{"client FIN_WAIT1", "target CLOSE_WAIT"} {
		found := false
		for _, k := range c.dwellKeys("orphan-finwait2") {
			found = found || k == key
		}
		if !found {
			t.Errorf("no %s panel in %v", key, c.dwellKeys("orphan-finwait2"))
		}
	}
}
