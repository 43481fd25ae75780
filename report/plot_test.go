package report

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"gonum.org/v1/plot/vg"
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
			want := map[string]int{"states": len(c.Variants), "throughput": 1, "latency": len(scenarioOrder(c.groups)), "headline": 1}
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
