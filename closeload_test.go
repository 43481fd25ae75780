package closeload_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/closeload/closeload"
	"github.com/closeload/closeload/internal/nstest"
	"github.com/closeload/closeload/results"
	"github.com/closeload/closeload/runner"
)

func TestMain(m *testing.M) { closeload.TestMain(m) }

// TestIsolatedRunFromTestBinary runs the built-in target in a fresh network
// namespace from this test binary, through the TestMain hook, with a sysctl
// set there: the record says where it ran, the sysctl was in effect, and
// GOMAXPROCS is as it was.
func TestIsolatedRunFromTestBinary(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	load := closeload.New(closeload.Conns(2), closeload.Duration(400*time.Millisecond), closeload.Scenario("client-halfclose"),
		closeload.Sysctl("net.ipv4.tcp_fin_timeout", "7"), closeload.Sampling(100*time.Millisecond))
	rec, err := load.Run(context.Background())
	if errors.Is(err, runner.ErrNoReexec) {
		t.Fatal(err)
	}
	if err != nil && strings.Contains(err.Error(), "isolated network namespace") {
		nstest.Unavailable(t, err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rec.Provenance.Namespace, "isolated") || rec.Sysctls.After["net.ipv4.tcp_fin_timeout"] != "7" {
		t.Errorf("namespace %q, tcp_fin_timeout after %q: want an isolated run with the sysctl in effect", rec.Provenance.Namespace, rec.Sysctls.After["net.ipv4.tcp_fin_timeout"])
	}
	if rec.Totals.Cycles == 0 || rec.Verdict.Status != results.VerdictOK {
		t.Errorf("cycles %d verdict %+v", rec.Totals.Cycles, rec.Verdict)
	}
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Errorf("GOMAXPROCS %d after the run, was %d", got, procs)
	}
}

// TestRunAgainstOwnServer drives a net/http server the test starts, in this
// process's namespace: exactly the asked connections, no file written, the
// verdict and thresholds in the record, GOMAXPROCS restored.
func TestRunAgainstOwnServer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }))
	defer srv.Close()
	dir := t.TempDir()
	t.Chdir(dir)
	procs := runtime.GOMAXPROCS(0)
	load := closeload.New(closeload.Scenario("full-close"), closeload.HTTP(), closeload.Conns(2), closeload.Cycles(200),
		closeload.Threshold("errors<1%"), closeload.Threshold("total.p99<1ns"))
	rec, err := load.Run(context.Background(), srv.Listener.Addr().String())
	if rec == nil {
		t.Fatal(err)
	}
	if rec.Totals.Cycles != 200 || rec.Totals.Attempts != 200 {
		t.Errorf("cycles %d attempts %d, want 200", rec.Totals.Cycles, rec.Totals.Attempts)
	}
	if rec.Verdict.Status != results.VerdictThreshold || err == nil || !strings.Contains(err.Error(), "total.p99<1ns") {
		t.Errorf("verdict %+v err %v: want the impossible p99 threshold failed", rec.Verdict, err)
	}
	if len(rec.Verdict.Thresholds) != 2 || !rec.Verdict.Thresholds[0].Held {
		t.Errorf("thresholds %+v: want errors<1%% held", rec.Verdict.Thresholds)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("a run without Record wrote %v", ents)
	}
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Errorf("GOMAXPROCS %d after the run, was %d", got, procs)
	}
}

// TestOptionErrors names the option in error.
func TestOptionErrors(t *testing.T) {
	for _, tc := range []struct {
		opt  closeload.Option
		want string
	}{
		{closeload.Conns(0), "Conns 0"},
		{closeload.Scenario("nope"), "closeload.Scenario"},
		{closeload.Threshold("speed>1"), "closeload.Threshold"},
		{closeload.Sysctl("net.ipv4.tcp_fin_timeout", "x"), "closeload.Sysctl"},
	} {
		_, err := closeload.New(tc.opt, closeload.Duration(time.Second)).Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("err %v, want %q", err, tc.want)
		}
	}
	if _, err := closeload.New().Run(context.Background(), "127.0.0.1:1", "127.0.0.1:2"); !errors.Is(err, closeload.ErrTargets) {
		t.Errorf("two targets: %v", err)
	}
}
