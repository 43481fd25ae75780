package report

import (
	"bytes"
	"context"
	"encoding/json"
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
		`id="states-0-tcp_tw_reuse=0"`, `id="states-1-tcp_tw_reuse=1"`, "net.ipv4.tcp_tw_reuse", "20260301T1000-tw1-r2", "too few runs"} {
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

// TestHTMLChromium opens the page in headless Chromium: no console errors,
// and every plot laid out with a visible size and drawn pixels in the
// screenshot.
func TestHTMLChromium(t *testing.T) {
	bin := findChromium()
	if bin == "" {
		if os.Getenv("CI") == "true" || os.Getenv("CLOSELOAD_REQUIRE_NETNS") == "1" {
			t.Fatal("chromium not found; CI must install it (apt-get install chromium)")
		}
		t.Skip("chromium not found (apt-get install chromium)")
	}
	dir := t.TempDir()
	c := loadCompare(t, []string{"testdata/runs/tw-reuse"}, Options{})
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
	shot := filepath.Join(dir, "shot.png")
	const width, height = 1280, 6000
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
		"--user-data-dir="+filepath.Join(dir, "profile"), "--hide-scrollbars",
		"--window-size=1280,6000", "--screenshot="+shot, "--dump-dom", "--enable-logging=stderr", "--v=0",
		"file://"+checkPath)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
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
	plots, err := c.Plots()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Plots) != len(plots) {
		t.Fatalf("page lays out %d plots, want %d", len(rep.Plots), len(plots))
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
		if p.W < 300 || p.H < 150 || p.Display == "none" || p.Visibility != "visible" {
			t.Errorf("plot %s not visible: %+v", p.Name, p)
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
	for _, want := range []string{"states-0-tcp_tw_reuse=0", "states-1-tcp_tw_reuse=1"} {
		found := false
		for _, p := range rep.Plots {
			found = found || p.Name == want
		}
		if !found {
			t.Errorf("no state timeline %s on the page", want)
		}
	}
	if keep := os.Getenv("CLOSELOAD_KEEP_SCREENSHOT"); keep != "" {
		data, _ := os.ReadFile(shot)
		os.WriteFile(keep, data, 0o644)
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
