package report

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestHTMLSelfContained checks the page references nothing outside itself.
func TestHTMLSelfContained(t *testing.T) {
	dir := t.TempDir()
	c := loadCompare(t, []string{"testdata/runs/tw-reuse"}, Options{})
	if err := WriteHTML(dir, c, nil); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(filepath.Join(dir, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{`<script`, `<link`, `<iframe`, `<img`, `@import`, `url(`, ` src=`, `xlink:href="http`, ` href="http`} {
		if bytes.Contains(page, []byte(bad)) {
			t.Errorf("page contains %q: it must not load anything", bad)
		}
	}
	for _, want := range []string{"tcp_tw_reuse=0", "tcp_tw_reuse=1", "TcpExt.TWRecycled", "errors addr-not-available",
		`id="headline"`, `id="kernel"`, `id="states"`, `id="throughput"`, "net.ipv4.tcp_tw_reuse", "20260301T1000-tw1-r2", "too few runs"} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// plotCheck is injected into a copy of the page: it reports where every
// plot is laid out, so the test can look at those pixels of the screenshot.
const plotCheck = `<pre id="plotcheck"></pre><script>
(function () {
  var out = [];
  document.querySelectorAll("figure").forEach(function (f) {
    var svg = f.querySelector("svg.plot"), r = svg ? svg.getBoundingClientRect() : {x: 0, y: 0, width: 0, height: 0};
    var st = svg ? getComputedStyle(svg) : {display: "none", visibility: "hidden"};
    out.push({name: f.id, x: r.x + scrollX, y: r.y + scrollY, w: r.width, h: r.height, display: st.display, visibility: st.visibility});
  });
  document.getElementById("plotcheck").textContent = JSON.stringify({height: document.body.getBoundingClientRect().bottom + scrollY, plots: out});
})();
</script>`

// TestHTMLChromium opens the page in headless Chromium at a wide and a
// narrow window: no console errors, the headline figure first, every plot
// laid out across the window's width with drawn pixels in the screenshot.
// The screenshots are written to the test's artifact directory (kept with
// go test -artifacts) and logged.
func TestHTMLChromium(t *testing.T) {
	bin := findChromium()
	if bin == "" {
		if os.Getenv("CI") == "true" || os.Getenv("CLOSELOAD_REQUIRE_NETNS") == "1" {
			t.Fatal("chromium not found; CI must install it (apt-get install chromium)")
		}
		t.Skip("chromium not found (apt-get install chromium)")
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"tw-reuse", []string{"testdata/runs/tw-reuse"}},
		{"baseline", []string{"../results/baseline/client-halfclose"}},
	} {
		c := loadCompare(t, tc.args, Options{})
		dir := t.TempDir()
		if err := WriteHTML(dir, c, nil); err != nil {
			t.Fatal(err)
		}
		page, err := os.ReadFile(filepath.Join(dir, "index.html"))
		if err != nil {
			t.Fatal(err)
		}
		check := bytes.Replace(page, []byte("</body>"), []byte(plotCheck+"\n</body>"), 1)
		checkPath := filepath.Join(dir, "check.html")
		if err := os.WriteFile(checkPath, check, 0o644); err != nil {
			t.Fatal(err)
		}
		plots, err := c.Plots()
		if err != nil {
			t.Fatal(err)
		}
		for _, width := range []int{1400, 800} {
			t.Run(fmt.Sprintf("%s-%dpx", tc.name, width), func(t *testing.T) {
				screenshotCheck(t, bin, checkPath, width, len(plots))
			})
		}
	}
}

func screenshotCheck(t *testing.T, bin, checkPath string, width, nplots int) {
	const height = 9000
	shot := filepath.Join(t.ArtifactDir(), "page.png")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
		"--user-data-dir="+filepath.Join(t.TempDir(), "profile"), "--hide-scrollbars",
		fmt.Sprintf("--window-size=%d,%d", width, height), "--screenshot="+shot, "--dump-dom", "--enable-logging=stderr", "--v=0",
		"file://"+checkPath)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	t.Logf("screenshot at %dpx: %s", width, shot)
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(line, ":CONSOLE") || strings.Contains(line, "Uncaught") {
			t.Errorf("console message: %s", line)
		}
	}
	m := regexp.MustCompile(`(?s)<pre id="plotcheck">(.*?)</pre>`).FindSubmatch(stdout.Bytes())
	if m == nil || len(m[1]) == 0 {
		t.Fatalf("no plot report in the DOM:\n%.2000s", stdout.String())
	}
	var rep struct {
		Height float64
		Plots  []struct {
			Name                string
			X, Y, W, H          float64
			Display, Visibility string
		}
	}
	if err := json.Unmarshal(bytes.ReplaceAll(m[1], []byte("&quot;"), []byte(`"`)), &rep); err != nil {
		t.Fatalf("plot report %q: %v", m[1], err)
	}
	if len(rep.Plots) != nplots {
		t.Fatalf("page lays out %d plots, want %d", len(rep.Plots), nplots)
	}
	if rep.Plots[0].Name != "headline" {
		t.Errorf("first figure is %q, want the headline", rep.Plots[0].Name)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if b := img.Bounds(); b.Dx() != width || b.Dy() != height {
		t.Errorf("screenshot is %v, want %dx%d", b, width, height)
	}
	t.Logf("page %gpx high, %d plots laid out", rep.Height, len(rep.Plots))
	if rep.Height > height {
		t.Errorf("page is %gpx high, taller than the %dpx screenshot: plots below it go unchecked", rep.Height, height)
	}
	for _, p := range rep.Plots {
		// A figure uses the window's width, less the page's margins.
		if p.W < 0.85*float64(width)-60 || p.H < 150 || p.Display == "none" || p.Visibility != "visible" {
			t.Errorf("plot %s not laid out across the window (%dpx): %+v", p.Name, width, p)
			continue
		}
		r := image.Rect(int(p.X), int(p.Y), int(p.X+p.W), int(p.Y+p.H)).Intersect(img.Bounds())
		sub := img.(interface {
			SubImage(image.Rectangle) image.Image
		}).SubImage(r)
		ink, colour := inkPixels(sub), colourPixels(sub)
		if ink < r.Dx()*r.Dy()/100 || colour < 200 {
			t.Errorf("plot %s at %v: %d drawn and %d coloured pixels in the screenshot: not rendered?", p.Name, r, ink, colour)
		}
	}
	if keep := os.Getenv("CLOSELOAD_KEEP_SCREENSHOT"); keep != "" {
		data, _ := os.ReadFile(shot)
		os.WriteFile(fmt.Sprintf("%s-%s.png", keep, strings.ReplaceAll(t.Name(), "/", "-")), data, 0o644)
	}
}

// colourPixels counts saturated pixels: plot lines and bars, not text.
func colourPixels(img image.Image) int {
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bb, _ := img.At(x, y).RGBA()
			hi, lo := max(r, g, bb), min(r, g, bb)
			if hi-lo > 0x4000 {
				n++
			}
		}
	}
	return n
}
