package report

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/closeload/closeload/internal/binarytest"
	"github.com/closeload/closeload/internal/nstest"
	"github.com/closeload/closeload/results"
)

// hdrHistogramJar is where Debian's libhdrhistogram-java puts the library.
var hdrHistogramJars = []string{"/usr/share/java/hdrhistogram.jar", "/usr/share/java/HdrHistogram.jar"}

// javaProcessor finds java and Debian's HdrHistogram jar, skipping (or
// failing in CI) when they are missing.
func javaProcessor(t *testing.T) (java, jar string) {
	t.Helper()
	java, err := exec.LookPath("java")
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
	return java, jar
}

// processHlog runs HistogramLogProcessor with no -tag on path and returns
// its output and the total count it read.
func processHlog(t *testing.T, java, jar, path string) (string, int64) {
	t.Helper()
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
	m := regexp.MustCompile(`Total count\s*=\s*(\d+)\]`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no total count in the processor's output:\n%.2000s", out)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return out, n
}

// TestRunHlogJavaProcessor makes a real run's .hlog and reads it with the
// Java processor without -tag: it sees the run's total phase, and the
// StartTime keeps its milliseconds.
func TestRunHlogJavaProcessor(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		java, jar := javaProcessor(t)
		bin := binarytest.Closeload(t)
		dir := t.TempDir()
		out, hlog := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.hlog")
		args := []string{"run", "-s", "client-halfclose", "-d", "1s", "--interval", "250ms", "--grace", "500ms", "--out", out, "--hlog", hlog}
		if b, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, b)
		}
		r, err := results.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		text, n := processHlog(t, java, jar, hlog)
		want := r.Scenarios[0].Phases["total"].Count
		// The log covers the whole run, warm-up and grace included; the
		// record its measured window.
		if n < want || n > 2*want+100 {
			t.Errorf("processor read %d values, want about the run's %d total-phase values", n, want)
		}
		log, err := os.ReadFile(hlog)
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`#\[StartTime: (\d+\.\d{3}) `).FindSubmatch(log)
		if m == nil {
			t.Fatalf("no millisecond StartTime in the log:\n%.500s", log)
		}
		if !strings.Contains(text, "#[StartTime: "+string(m[1])) {
			t.Errorf("processor did not keep the StartTime %s:\n%.300s", m[1], text)
		}
	})
}

// TestHlogJavaProcessor feeds the report's .hlog to HdrHistogram's own
// HistogramLogProcessor with no -tag: it reads the untagged intervals, and
// its total count must be every run's total-phase count.
func TestHlogJavaProcessor(t *testing.T) {
	java, jar := javaProcessor(t)
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
	out, got := processHlog(t, java, jar, path)
	t.Logf("HistogramLogProcessor output (head):\n%.600s", out)
	if !regexp.MustCompile(`#\[StartTime: 1772359201\.000 `).MatchString(out) {
		t.Errorf("processor did not read the millisecond StartTime of the first run")
	}
	if got != want {
		t.Errorf("processor counted %d values, want %d (every run's total phase)", got, want)
	}
}
