package main

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/closeload/closeload/internal/nstest"
)

// TestReportRegressionGate makes real records in a fresh namespace, four
// repeats per side (the fewest a Mann-Whitney test at alpha 0.05 can call
// significant), and gates on them: a candidate whose target answers with
// 1 MiB instead of 16 bytes has a far lower rate and higher latencies and
// fails the gate (exit 3, naming the figures); a candidate made like the
// baseline, its runs interleaved with the baseline's, passes a generous
// limit.
func TestReportRegressionGate(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		dir := t.TempDir()
		base, same, slow := filepath.Join(dir, "base"), filepath.Join(dir, "same"), filepath.Join(dir, "slow")
		runOne := func(out string, responseSize int) {
			t.Helper()
			cmd := exec.Command(binary, "run", "-s", "client-halfclose", "--response-size", fmt.Sprint(responseSize), "-d", "1s", "--interval", "250ms",
				"--grace", "500ms", "--out", out)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%v: %v\n%s", cmd.Args, err, b)
			}
		}
		for i := range 4 {
			runOne(filepath.Join(base, fmt.Sprintf("r%d.json", i)), 16)
			runOne(filepath.Join(same, fmt.Sprintf("r%d.json", i)), 16)
			runOne(filepath.Join(slow, fmt.Sprintf("r%d.json", i)), 1<<20)
		}
		report := func(limit string, args ...string) (int, string, string) {
			t.Helper()
			cmd := exec.Command(binary, append([]string{"report", "--baseline", "base", "--max-regression", limit}, args...)...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if err != nil && !errors.As(err, &ee) {
				t.Fatal(err)
			}
			return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
		}
		t.Run("fails", func(t *testing.T) {
			code, stdout, stderr := report("5%", "base="+base, "rc="+slow)
			if code != 3 {
				t.Fatalf("exit %d, want 3:\n%s\n%s", code, stdout, stderr)
			}
			for _, want := range []string{"regression: rc: client-halfclose cycles/s", "regression: rc: client-halfclose total p50"} {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
		})
		t.Run("passes", func(t *testing.T) {
			code, stdout, stderr := report("100%", "base="+base, "rc="+same)
			if code != 0 {
				t.Fatalf("exit %d, want 0:\n%s\n%s", code, stdout, stderr)
			}
			if !strings.Contains(stderr, "no figure worse than baseline base") {
				t.Errorf("stderr does not say the gate held:\n%s", stderr)
			}
		})
		t.Run("bad limit", func(t *testing.T) {
			code, _, stderr := report("five", "base="+base, "rc="+same)
			if code != 2 || !strings.Contains(stderr, "--max-regression") {
				t.Errorf("exit %d, want 2 naming --max-regression:\n%s", code, stderr)
			}
		})
	})
}

func TestParseRegressionLimit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		ok   bool
	}{{"5%", 0.05, true}, {"0.05", 0.05, true}, {"0", 0, true}, {" 12.5% ", 0.125, true}, {"-1%", 0, false}, {"five", 0, false}, {"%", 0, false}, {"NaN", 0, false}} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseRegressionLimit(tc.in)
			if (err == nil) != tc.ok || tc.ok && got != tc.want {
				t.Errorf("parseRegressionLimit(%q) = %g, %v; want %g, ok=%v", tc.in, got, err, tc.want, tc.ok)
			}
		})
	}
}
