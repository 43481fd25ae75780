package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/closeload/closeload/results"
	"github.com/closeload/closeload/runner"
)

// binary is closeload built once for the tests that need a process of their
// own (signals, exit codes as a shell sees them).
var binary string

func TestMain(m *testing.M) {
	// Runs in fresh namespaces re-execute this test binary, which then
	// serves them as the closeload binary does.
	if code, ok := runner.ServeChild(); ok {
		os.Exit(code)
	}
	dir, err := os.MkdirTemp("", "closeload-cmd-test")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "closeload")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		panic("go build: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = execute(args, &o, &e)
	return code, o.String(), e.String()
}

// TestUsageErrors checks that every bad flag is refused before a socket
// opens, with exit status 2 and a message naming the flag.
func TestUsageErrors(t *testing.T) {
	out := filepath.Join(t.TempDir(), "r.json")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown scenario", []string{"run", "-s", "nope"}, "--scenario"},
		{"typo gets a suggestion", []string{"run", "-s", "client-halfclos"}, `did you mean "client-halfclose"`},
		{"zero weight", []string{"run", "-s", "linger0:0"}, "weight"},
		{"malformed mix", []string{"run", "-s", "linger0:x,"}, "weight"},
		{"negative rate", []string{"run", "--rate", "-5"}, "--rate"},
		{"zero conns", []string{"run", "--conns", "0"}, "--conns"},
		{"negative duration", []string{"run", "--duration", "-1s"}, "--duration"},
		{"unparsable duration", []string{"run", "--duration", "ten"}, "duration"},
		{"unbounded", []string{"run", "--duration", "0"}, "--cycles"},
		{"bad source", []string{"run", "--source", "127.0.0.9-127.0.0.2"}, "--source"},
		{"source family", []string{"run", "--source", "::1"}, "--source"},
		{"target without port", []string{"run", "--target", "127.0.0.1"}, "--target"},
		{"target port zero", []string{"run", "--target", "127.0.0.1:0"}, "--target"},
		{"unwritable out", []string{"run", "--out", "/proc/closeload/r.json"}, "--out"},
		{"unwritable hlog", []string{"run", "--out", out, "--hlog", "/proc/closeload/x.hlog"}, "--hlog"},
		{"bad arrival", []string{"run", "--arrival", "bursty"}, "--arrival"},
		{"interval too short", []string{"run", "--interval", "1ms"}, "--interval"},
		{"collector source", []string{"run", "--collector-source", "bogus"}, "--collector-source"},
		{"bad request", []string{"run", "--request", "gopher"}, "--request"},
		{"http needs target", []string{"run", "--request", "http"}, "--request"},
		{"missing request file", []string{"run", "--target", "127.0.0.1:9", "--request", "@/nonexistent"}, "--request"},
		{"negative hold", []string{"run", "--hold", "-1s"}, "--hold"},
		{"negative request size", []string{"run", "--request-size", "-1"}, "--request-size"},
		{"unread-close too small", []string{"run", "-s", "unread-close", "--request-size", "1"}, "--request-size"},
		{"zero timeout", []string{"run", "--timeout", "0s"}, "--timeout"},
		{"unknown flag", []string{"run", "--bogus"}, "bogus"},
		{"unknown command", []string{"rnu"}, "unknown command"},
		{"stray argument", []string{"run", "extra"}, "extra"},
		{"serve listen", []string{"serve", "--listen", "nowhere"}, "--listen"},
		{"serve scenario", []string{"serve", "-s", "nope"}, "--scenario"},
		{"bad sysctl", []string{"run", "--sysctl", "net.ipv4.tcp_fin_timeout"}, "--sysctl"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := run(t, tc.args...)
			if code != 2 {
				t.Fatalf("exit %d, want 2; stderr: %s", code, stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Fatalf("stderr %q does not name %q", stderr, tc.want)
			}
			if strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Fatalf("usage error is more than one line:\n%s", stderr)
			}
		})
	}
}

func TestScenariosListsCatalogue(t *testing.T) {
	code, out, _ := run(t, "scenarios")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, name := range []string{"client-halfclose", "server-halfclose", "simultaneous", "full-close", "linger0",
		"unread-close", "orphan-finwait2", "close-wait-leak", "stream-echo"} {
		if !strings.Contains(out, name) {
			t.Errorf("scenarios does not list %s", name)
		}
	}
}

// TestRunWritesRecord runs the main job briefly and reads back what it
// wrote: the record and the HdrHistogram interval log.
func TestRunWritesRecord(t *testing.T) {
	dir := t.TempDir()
	out, hlog := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.hlog")
	code, stdout, stderr := run(t, "run", "-s", "client-halfclose:3,linger0:1", "-d", "1500ms", "--interval", "250ms",
		"--warmup", "200ms", "--out", out, "--hlog", hlog)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"client-halfclose", "linger0", "p99", "TIME_WAIT", "record: " + out} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	r, err := results.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.Interrupted || len(r.Scenarios) != 2 || r.Totals.Cycles == 0 {
		t.Fatalf("record: interrupted=%v scenarios=%d cycles=%d", r.Interrupted, len(r.Scenarios), r.Totals.Cycles)
	}
	if r.Scenarios[0].Phases["drain"].Count == 0 || r.Scenarios[1].Phases["drain"].Count != 0 {
		t.Errorf("drain counts: client-halfclose %d (want > 0), linger0 %d (want 0)",
			r.Scenarios[0].Phases["drain"].Count, r.Scenarios[1].Phases["drain"].Count)
	}
	if ratio := float64(r.Scenarios[0].Cycles) / float64(r.Scenarios[1].Cycles); ratio < 2.5 || ratio > 3.5 {
		t.Errorf("mix 3:1 gave %d:%d", r.Scenarios[0].Cycles, r.Scenarios[1].Cycles)
	}
	if r.MeasuredSeconds < 1.4 || r.MeasuredSeconds > 4 {
		t.Errorf("measured %.2fs for a 1.5s run after warm-up", r.MeasuredSeconds)
	}
	if len(r.Series) < 4 {
		t.Errorf("series has %d samples at 250ms over 1.7s", len(r.Series))
	}
	f, err := os.Open(hlog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lr := hdrhistogram.NewHistogramLogReader(f)
	var total int64
	tags := map[string]bool{}
	for {
		h, err := lr.NextIntervalHistogram()
		if err != nil {
			t.Fatal(err)
		}
		if h == nil {
			break
		}
		tags[h.Tag()] = true
		if h.Tag() == "total" {
			total += h.TotalCount()
		}
	}
	if !tags["connect"] || !tags["client-halfclose.drain"] {
		t.Errorf("hlog tags %v lack connect or client-halfclose.drain", tags)
	}
	if total != int64(r.Totals.Cycles) {
		t.Errorf("hlog total count %d != record cycles %d", total, r.Totals.Cycles)
	}
}

// TestInterruptWritesRecord sends SIGINT to a running closeload: it must
// stop promptly and still write its record, marked interrupted.
func TestInterruptWritesRecord(t *testing.T) {
	out := filepath.Join(t.TempDir(), "r.json")
	cmd := exec.Command(binary, "run", "-s", "client-halfclose", "-d", "60s", "--out", out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		t.Fatal("closeload did not stop within 15s of SIGINT")
	}
	r, err := results.ReadFile(out)
	if err != nil {
		t.Fatalf("no record after SIGINT: %v (stderr: %s)", err, stderr.String())
	}
	if !r.Interrupted || r.Totals.Cycles == 0 {
		t.Fatalf("record: interrupted=%v cycles=%d, want true and > 0", r.Interrupted, r.Totals.Cycles)
	}
}

// TestRefusedTarget checks that a target nobody listens on is reported as
// such, at once, instead of a run full of errors.
func TestRefusedTarget(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // now nothing listens there
	start := time.Now()
	code, _, stderr := run(t, "run", "--target", addr, "-s", "full-close", "-d", "10s", "--out", filepath.Join(t.TempDir(), "r.json"))
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr %s", code, stderr)
	}
	if !strings.Contains(stderr, "refused") || !strings.Contains(stderr, addr) {
		t.Fatalf("stderr %q does not say %s refused", stderr, addr)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v to report a refusing target", d)
	}
}

// TestRunAgainstHTTPServer drives a real HTTP server (net/http on loopback)
// with --request http: the client halves speak HTTP/1.1 with Connection:
// close and read the whole response.
func TestRunAgainstHTTPServer(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Header.Get("Connection") != "close" || r.Host == "" {
			http.Error(w, "want Connection: close and a Host", http.StatusBadRequest)
			return
		}
		io.WriteString(w, strings.Repeat("x", 1000))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	out := filepath.Join(t.TempDir(), "r.json")
	for _, scenario := range []string{"full-close", "client-halfclose"} {
		t.Run(scenario, func(t *testing.T) {
			before := hits.Load()
			code, _, stderr := run(t, "run", "--target", addr, "--request", "http", "-s", scenario, "--cycles", "50", "-c", "2", "--out", out)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			r, err := results.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			s := r.Scenarios[0]
			if s.Cycles != 50 || len(s.Errors) != 0 {
				t.Fatalf("cycles %d errors %v, want 50 and none", s.Cycles, s.Errors)
			}
			// The probe connection sends no request; 50 requests reached the handler.
			if got := hits.Load() - before; got != 50 {
				t.Fatalf("server handled %d requests, want 50", got)
			}
			if s.Bytes.Received < 50*1000 {
				t.Fatalf("received %d bytes, want the 50 responses of 1000+ bytes", s.Bytes.Received)
			}
		})
	}
}
