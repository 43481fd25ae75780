package report

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// hdrHistogramJar is where Debian's libhdrhistogram-java puts the library.
var hdrHistogramJars = []string{"/usr/share/java/hdrhistogram.jar", "/usr/share/java/HdrHistogram.jar"}

// TestHlogJavaProcessor feeds the report's .hlog to HdrHistogram's own
// HistogramLogProcessor with no -tag: it reads the untagged intervals, and
// its total count must be every run's total-phase count.
func TestHlogJavaProcessor(t *testing.T) {
	java, err := exec.LookPath("java")
	jar := ""
	for _, j := range hdrHistogramJars {
		if _, err := os.Stat(j); err == nil {
			jar = j
		}
	}
	if err != nil || jar == "" {
		if os.Getenv("CI") == "true" || os.Getenv("CLOSELOAD_REQUIRE_NETNS") == "1" {
			t.Fatal("java or HdrHistogram jar not found; CI must install libhdrhistogram-java")
		}
		t.Skip("java or HdrHistogram jar not found (apt-get install libhdrhistogram-java)")
	}
	c := loadCompare(t, []string{"testdata/runs/tw-reuse"}, Options{})
	var b bytes.Buffer
	if err := c.WriteHlog(&b); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "report.hlog")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var want int64
	for vi := range c.Variants {
		runs, err := c.Runs(vi)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range runs {
			for _, sc := range r.Scenarios {
				want += sc.Phases["total"].Count
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, java, "-cp", jar, "org.HdrHistogram.HistogramLogProcessor", "-i", path)
	cmd.Dir = t.TempDir()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("HistogramLogProcessor: %v\n%s", err, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Errorf("HistogramLogProcessor wrote to stderr:\n%s", stderr.String())
	}
	out := stdout.String()
	t.Logf("HistogramLogProcessor output (head):\n%.600s", out)
	if !regexp.MustCompile(`#\[StartTime: 1772359201\.000 `).MatchString(out) {
		t.Errorf("processor did not read the millisecond StartTime of the first run")
	}
	m := regexp.MustCompile(`Total count\s*=\s*(\d+)\]`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no total count in the processor's output:\n%.2000s", out)
	}
	if got, _ := strconv.ParseInt(m[1], 10, 64); got != want {
		t.Errorf("processor counted %d values, want %d (every run's total phase)", got, want)
	}
}
