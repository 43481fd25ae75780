package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/closeload/closeload/report"
	"github.com/closeload/closeload/results"
)

// neverClosingServer accepts connections, answers and then waits for the
// client's FIN without ever closing first (an asyncio-style server), until
// the test ends.
func neverClosingServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				buf := make([]byte, 4096)
				c.Read(buf)
				c.Write([]byte("response"))
				io.Copy(io.Discard, c) // waits for the client's FIN, which never comes
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// TestNothingCompletedFails runs full-close against a server that waits for
// the client's FIN while the client waits for its EOF: no connection ever
// completes. The in-flight connections are counted unfinished, the figures
// add up, and the run fails with exit 1 instead of "complete, 0 errors".
func TestNothingCompletedFails(t *testing.T) {
	addr := neverClosingServer(t)
	out := filepath.Join(t.TempDir(), "r.json")
	code, stdout, stderr := run(t, "run", "--target", addr, "-s", "full-close", "-c", "4", "-d", "1s", "--grace", "200ms", "--out", out)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", code, stdout, stderr)
	}
	r, err := results.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	tot := r.Totals
	var unfinished, errs uint64
	for _, v := range tot.Unfinished {
		unfinished += v
	}
	for _, e := range tot.Errors {
		errs += e.Count
	}
	if tot.Cycles != 0 || unfinished < 4 || tot.Attempts != tot.Cycles+errs+unfinished {
		t.Errorf("attempts %d = cycles %d + errors %d + unfinished %d (%v)? want every connection unfinished", tot.Attempts, tot.Cycles, errs, unfinished, tot.Unfinished)
	}
	if r.Verdict == nil || r.Verdict.Status != results.VerdictFailed {
		t.Errorf("verdict %+v, want failed", r.Verdict)
	}
	for _, want := range []string{"unfinished at the stop", "verdict: FAILED", "no connection completed"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "complete,") {
		t.Errorf("summary says complete over a run that did nothing:\n%s", stdout)
	}
}

// TestRefusedBeforeAnySocket checks the combinations that measure nothing
// and are refused with exit 2 naming the flag.
func TestRefusedBeforeAnySocket(t *testing.T) {
	out := filepath.Join(t.TempDir(), "r.json")
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"non-local source, isolated", []string{"run", "--source", "10.1.2.3"}, "--source 10.1.2.3 is not an address of the run's fresh network namespace"},
		{"non-local source, host", []string{"run", "--target", "127.0.0.1:9", "--source", "10.1.2.3"}, "--source 10.1.2.3 is not an address of this host"},
		{"stream-echo with http", []string{"run", "--target", "127.0.0.1:9", "--request", "http", "-s", "stream-echo"}, "--request with stream-echo"},
		{"unread-close with http", []string{"run", "--target", "127.0.0.1:9", "--request", "http", "-s", "unread-close"}, "--request with unread-close"},
		{"arrival without rate", []string{"run", "--arrival", "poisson"}, "--arrival poisson needs --rate"},
		{"duration with storm", []string{"run", "--storm", "100", "-d", "5s"}, "--duration 5s with --storm"},
		{"out is a directory", []string{"run", "--out", dir}, "is a directory"},
		{"bad threshold", []string{"run", "--threshold", "speed>3"}, "--threshold"},
		{"threshold on a scenario not in the mix", []string{"run", "-s", "linger0", "--threshold", "client-halfclose.total.p99<1ms"}, "not in --scenario"},
		{"on-refused", []string{"run", "--on-refused", "retry"}, "--on-refused"},
		{"unknown command suggests", []string{"rnu"}, `did you mean "run"`},
		{"watch port not a number", []string{"watch", "--port", "http"}, "--port"},
		{"isolate and host-netns", []string{"run", "--isolate", "--host-netns"}, "choose one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(tc.args, "--out", out)
			if tc.args[0] != "run" || strings.Contains(tc.name, "directory") {
				args = tc.args
			}
			code, _, stderr := run(t, args...)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q: want exit 2 saying %q", code, stderr, tc.want)
			}
		})
	}
}

// TestThresholds checks every threshold form held and failed: all held
// exit 0, one failed exits 3, and each is printed and stored with what was
// measured.
func TestThresholds(t *testing.T) {
	dir := t.TempDir()
	held := []string{"errors<1%", "rate>=1", "total.p99<10s", "connect.p50>0ns", "peak.TIME_WAIT>=1", "unfinished==0",
		"client-halfclose.total.p99<10s", "client-halfclose.cycles>10", "attempts>10", "total.max<=60s", "drain.mean>0us"}
	args := []string{"run", "-s", "client-halfclose:3,linger0:1", "-c", "2", "-d", "700ms", "--interval", "100ms", "--out", filepath.Join(dir, "held.json")}
	for _, h := range held {
		args = append(args, "--threshold", h)
	}
	code, stdout, stderr := run(t, args...)
	if code != 0 {
		t.Fatalf("exit %d with thresholds that hold\n%s\n%s", code, stdout, stderr)
	}
	r, err := results.ReadFile(filepath.Join(dir, "held.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Verdict.Thresholds) != len(held) {
		t.Fatalf("record holds %d thresholds, want %d", len(r.Verdict.Thresholds), len(held))
	}
	for _, th := range r.Verdict.Thresholds {
		if !th.Held || th.Missing {
			t.Errorf("threshold %+v did not hold", th)
		}
	}
	failed := []string{"errors>50%", "rate<1", "total.p99<1ns", "peak.TIME_WAIT<1", "linger0.total.p50<1ns"}
	for _, f := range failed {
		t.Run(f, func(t *testing.T) {
			out := filepath.Join(dir, "f.json")
			code, stdout, _ := run(t, "run", "-s", "client-halfclose:3,linger0:1", "-c", "2", "-d", "300ms", "--threshold", "errors<1%", "--threshold", f, "--out", out)
			if code != 3 {
				t.Fatalf("exit %d, want 3 for a failed %s\n%s", code, f, stdout)
			}
			if !strings.Contains(stdout, "FAILED  "+f) || !strings.Contains(stdout, "held    errors<1%") || !strings.Contains(stdout, "verdict: THRESHOLD FAILED: "+f) {
				t.Errorf("summary does not show the thresholds:\n%s", stdout)
			}
		})
	}
}

// TestJSONSummary prints the summary as JSON with the verdict.
func TestJSONSummary(t *testing.T) {
	out := filepath.Join(t.TempDir(), "r.json")
	code, stdout, stderr := run(t, "run", "-s", "client-halfclose", "-c", "2", "-d", "300ms", "--format", "json", "--threshold", "errors<1%", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var s report.RunSummary
	if err := json.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatalf("stdout is not one JSON summary: %v\n%s", err, stdout)
	}
	if s.Verdict != results.VerdictOK || s.Record != out || len(s.Thresholds) != 1 || !s.Thresholds[0].Held || s.Completed == 0 || s.Attempts < s.Completed {
		t.Errorf("summary %+v", s)
	}
}

// TestOpenLoopShortOfRate asks an open loop for far more than one worker can
// carry against a slow server: the summary says asked against achieved and
// what limited it.
func TestOpenLoopShortOfRate(t *testing.T) {
	addr := answeringServer(t, 20*time.Millisecond, "ok")
	code, stdout, stderr := run(t, "run", "--target", addr, "-s", "full-close", "--rate", "2000", "-c", "1", "-d", "1s", "--out", filepath.Join(t.TempDir(), "r.json"))
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, stderr, stdout)
	}
	for _, want := range []string{"limit: open loop asked 2000/s and started", "late by more than 1ms", "workers were busy"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
}

// TestPortExhaustionStops fills every port of a 100-port range in
// TIME_WAIT (tcp_tw_reuse off, one source) in the run's own namespace: the
// run stops with its reason and exit 1 well before its 30 s, instead of
// spinning through addr-not-available errors.
func TestPortExhaustionStops(t *testing.T) {
	out := filepath.Join(t.TempDir(), "r.json")
	start := time.Now()
	code, stdout, stderr := run(t, "run", "--sysctl", "net.ipv4.ip_local_port_range=40000 40099", "--sysctl", "net.ipv4.tcp_tw_reuse=0",
		"--source", "127.0.0.1", "-s", "client-halfclose", "-c", "2", "-d", "30s", "--out", out)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", code, stdout, stderr)
	}
	if el := time.Since(start); el > 25*time.Second {
		t.Errorf("ran %v of its 30s: it did not stop on the fault", el)
	}
	r, err := results.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.Totals.Cycles < 50 || r.Totals.Cycles > 150 || r.Verdict.Status != results.VerdictFailed || !strings.Contains(strings.Join(r.Verdict.Reasons, " "), "addr-not-available") {
		t.Errorf("cycles %d (want about the 100 ports), verdict %+v", r.Totals.Cycles, r.Verdict)
	}
}

// TestInterruptExitStatus sends SIGINT to a running closeload: exit 130,
// the record written and marked interrupted; a second SIGINT right after
// the first stops at once, without the grace period.
func TestInterruptExitStatus(t *testing.T) {
	for _, twice := range []bool{false, true} {
		out := filepath.Join(t.TempDir(), "r.json")
		cmd := exec.Command(binary, "run", "-s", "client-halfclose", "-d", "60s", "--grace", "30s", "--out", out)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		cmd.Process.Signal(syscall.SIGINT)
		if twice {
			time.Sleep(50 * time.Millisecond)
			cmd.Process.Signal(syscall.SIGINT)
		}
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 130 {
			t.Fatalf("twice=%v: %v, want exit 130 (stderr %s)", twice, err, stderr.String())
		}
		r, err := results.ReadFile(out)
		if err != nil {
			t.Fatalf("no record after SIGINT: %v (stderr: %s)", err, stderr.String())
		}
		if !r.Interrupted || r.Verdict.Status != results.VerdictInterrupted || r.Totals.Cycles == 0 {
			t.Fatalf("record: interrupted=%v verdict %+v cycles=%d", r.Interrupted, r.Verdict, r.Totals.Cycles)
		}
	}
}

// TestSafeOutputs writes the record to standard output, through a
// symlink and through /dev/stdout: written through, never replaced.
func TestSafeOutputs(t *testing.T) {
	short := []string{"run", "-s", "client-halfclose", "-c", "2", "-d", "300ms"}
	t.Run("dash is stdout", func(t *testing.T) {
		code, stdout, stderr := run(t, append(short, "--out", "-")...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if _, err := results.Read(strings.NewReader(stdout)); err != nil {
			t.Errorf("stdout is not the record: %v\n%s", err, stdout)
		}
		if !strings.Contains(stderr, "verdict: ok") {
			t.Errorf("summary not on stderr: %s", stderr)
		}
		if _, err := os.Stat("-"); err == nil {
			t.Error("a file named - was made")
		}
	})
	t.Run("symlink kept", func(t *testing.T) {
		dir := t.TempDir()
		target, link := filepath.Join(dir, "real.json"), filepath.Join(dir, "link.json")
		os.WriteFile(target, []byte("old"), 0o600)
		os.Symlink(target, link)
		if code, _, stderr := run(t, append(short, "--out", link)...); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		fi, err := os.Lstat(link)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("the link was replaced: %v %v", fi.Mode(), err)
		}
		st, _ := os.Stat(target)
		if st.Mode().Perm() != 0o600 {
			t.Errorf("target mode %v, want 0600 kept", st.Mode().Perm())
		}
		if _, err := results.ReadFile(target); err != nil {
			t.Errorf("target does not hold the record: %v", err)
		}
	})
	t.Run("dev stdout", func(t *testing.T) {
		before, err := os.Lstat("/dev/stdout")
		if err != nil {
			t.Skip("no /dev/stdout")
		}
		outFile := filepath.Join(t.TempDir(), "captured")
		f, _ := os.Create(outFile)
		cmd := exec.Command(binary, append(short, "--out", "/dev/stdout")...)
		cmd.Stdout = f
		err = cmd.Run()
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(outFile)
		if _, err := results.Read(bytes.NewReader(b)); err != nil {
			t.Errorf("stdout does not hold the record: %v", err)
		}
		after, err := os.Lstat("/dev/stdout")
		if err != nil || after.Mode() != before.Mode() {
			t.Errorf("/dev/stdout changed: %v -> %v (%v)", before.Mode(), after.Mode(), err)
		}
	})
}

// answeringServer reads a request, waits delay, answers reply and closes
// first (so TIME_WAIT of every connection the client does not close first
// is the server's), until the test ends.
func answeringServer(t *testing.T, delay time.Duration, reply string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				c.Read(make([]byte, 64))
				time.Sleep(delay)
				c.Write([]byte(reply))
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

// TestExternalTargetSides drives a server on loopback that closes first:
// the summary and the record put its TIME_WAIT on the target's side, not
// the client's.
func TestExternalTargetSides(t *testing.T) {
	addr := answeringServer(t, 0, "response")
	out := filepath.Join(t.TempDir(), "r.json")
	code, stdout, stderr := run(t, "run", "--target", addr, "-s", "full-close", "-c", "2", "--cycles", "300", "--interval", "100ms", "--collector-source", "netlink", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	r, err := results.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	tw := r.PeakSides[results.SideTarget]["TIME_WAIT"].Total
	if tw < 250 || tw > 301 || r.PeakSides[results.SideClient]["TIME_WAIT"].Total != 0 {
		t.Errorf("TIME_WAIT target %d client %d: want the server's ~300 on the target side", tw, r.PeakSides[results.SideClient]["TIME_WAIT"].Total)
	}
	if !strings.Contains(stdout, "target side:  TIME_WAIT") {
		t.Errorf("summary lacks the target side:\n%s", stdout)
	}
}

// TestFormatsJSON checks the JSON of serve, watch and matrix.
func TestFormatsJSON(t *testing.T) {
	code, stdout, stderr := run(t, "watch", "--count", "2", "--interval", "50ms", "--format", "json")
	if code != 0 {
		t.Fatalf("watch exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 2 {
		t.Fatalf("watch printed %d lines, want 2 JSON lines:\n%s", len(lines), stdout)
	}
	for _, l := range lines {
		var f results.WatchFrame
		if err := json.Unmarshal([]byte(l), &f); err != nil || len(f.Rows) == 0 {
			t.Errorf("watch line %q: %v", l, err)
		}
	}
	code, stdout, stderr = run(t, "serve", "--listen", "127.0.0.1:0", "-s", "client-halfclose", "--duration", "200ms", "--format", "json")
	if code != 0 {
		t.Fatalf("serve exit %d: %s", code, stderr)
	}
	var s struct {
		Scenarios []report.ServeScenario `json:"scenarios"`
	}
	if err := json.Unmarshal([]byte(stdout), &s); err != nil || len(s.Scenarios) != 1 || s.Scenarios[0].Scenario != "client-halfclose" {
		t.Errorf("serve JSON %q: %v", stdout, err)
	}
	if !strings.Contains(stderr, "serving client-halfclose on") {
		t.Errorf("serve's listening line not on stderr: %q", stderr)
	}
}
