package benchmarks

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/closeload/closeload/internal/binarytest"

	"github.com/closeload/closeload/results"
	"github.com/closeload/closeload/sysctl"
)

// Speed goal (issue 4): an isolated variant starts its first connection
// less than 100 ms after launch. Both benchmarks report ms-to-first-conn:
//
//	go test ./benchmarks/ -run '^$' -bench Isolated -benchtime 10x
//
// BenchmarkIsolatedRun launches the real `closeload run --sysctl ...`
// (parent, re-exec into a fresh network namespace, loopback up, sysctls
// applied, built-in target, sampler) and measures up to the record's Start,
// which is taken just before the workers dial (after the one-connection
// probe). BenchmarkIsolatedReexec measures the isolation alone: re-exec of
// this test binary with CLONE_NEWNET (+CLONE_NEWUSER when not root), lo up,
// a variant applied, first loopback connection established.

// isolationChildEnv makes the test binary the isolated child.
const isolationChildEnv = "CLOSELOAD_BENCH_ISOLATION_CHILD"

// TestIsolationBenchChild is not a test: it is the child of
// BenchmarkIsolatedReexec. It prints the wall time of its first connection.
func TestIsolationBenchChild(t *testing.T) {
	if os.Getenv(isolationChildEnv) == "" {
		return
	}
	os.Exit(isolationChild())
}

func isolationChild() int {
	if ok, _ := sysctl.InIsolatedChild(); !ok {
		fmt.Fprintln(os.Stderr, "not isolated")
		return 3
	}
	if err := sysctl.PrepareIsolatedChild(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 4
	}
	if err := sysctl.Apply("", []sysctl.Assignment{{Key: "net.ipv4.tcp_tw_reuse", Value: "1"}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 5
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 6
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 7
	}
	at := time.Now().UnixNano()
	c.Close()
	ln.Close()
	fmt.Println(at)
	return 0
}

func BenchmarkIsolatedReexec(b *testing.B) {
	b.Setenv(isolationChildEnv, "1")
	var total time.Duration
	for b.Loop() {
		cmd := sysctl.IsolatedCommand(context.Background(), []string{"-test.run=^TestIsolationBenchChild$"})
		cmd.Stdout = nil
		t0 := time.Now()
		out, err := cmd.Output()
		if err != nil {
			if cmd.ProcessState == nil {
				b.Skipf("no isolation here: %v", sysctl.ExplainStart(err))
			}
			b.Fatalf("child: %v", err)
		}
		ns, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
		if err != nil {
			b.Fatalf("child said %q", out)
		}
		total += time.Unix(0, ns).Sub(t0)
	}
	b.ReportMetric(float64(total.Microseconds())/1e3/float64(b.N), "ms-to-first-conn")
}

func BenchmarkIsolatedRun(b *testing.B) {
	dir := b.TempDir()
	bin := binarytest.Closeload(b)
	var total time.Duration
	i := 0
	for b.Loop() {
		out := filepath.Join(dir, fmt.Sprintf("r%d.json", i))
		i++
		cmd := exec.Command(bin, "run", "--sysctl", "net.ipv4.tcp_tw_reuse=1", "--scenario", "client-halfclose",
			"--conns", "1", "--duration", "50ms", "--interval", "10ms", "--out", out)
		t0 := time.Now()
		if msg, err := cmd.CombinedOutput(); err != nil {
			if strings.Contains(string(msg), "cannot create an isolated network namespace") {
				b.Skipf("no isolation here: %s", msg)
			}
			b.Fatalf("closeload run: %v\n%s", err, msg)
		}
		rec, err := results.ReadFile(out)
		if err != nil {
			b.Fatal(err)
		}
		if !strings.HasPrefix(rec.Provenance.Namespace, "isolated") {
			b.Fatalf("run was not isolated: %q", rec.Provenance.Namespace)
		}
		total += rec.Start.Sub(t0)
	}
	b.ReportMetric(float64(total.Microseconds())/1e3/float64(b.N), "ms-to-first-conn")
}
