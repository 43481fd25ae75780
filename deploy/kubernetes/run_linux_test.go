package kubernetes_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/closeload/closeload/internal/binarytest"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/closeload/closeload/results"
)

// runBin runs the binary to its end (bounded), returning its exit code and
// output.
func runBin(t *testing.T, bin string, args []string) (int, string) {
	t.Helper()
	code, out, err := execBin(bin, args)
	if err != nil {
		t.Fatal(err)
	}
	return code, out
}

// execBin is runBin for any goroutine: it returns an error where runBin
// fails the test.
func execBin(bin string, args []string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String(), nil
	case errors.As(err, &ee) && ee.Exited():
		return ee.ExitCode(), out.String(), nil
	}
	return -1, out.String(), fmt.Errorf("closeload %s: %w\n%s", strings.Join(args, " "), err, out.String())
}

// startServe starts `closeload serve` on loopback for the scenario and
// returns its address and a function that stops it with SIGINT and returns
// what it printed. Cleanup kills it, by its PID, if the test did not stop it.
func startServe(t *testing.T, bin, scenario string) (string, func() string) {
	t.Helper()
	return binarytest.Serve(t, exec.Command(bin, "serve", "--listen", "127.0.0.1:0", "--scenario", scenario))
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

// TestManifestRunsAsShards runs the Job's own command line, as the kubelet
// would expand it for every completion index, against a `closeload serve` on
// loopback, then the report Job's command line on what the shards wrote. The
// last index's target refuses connections: that pod fails (exit 1, not a
// usage error: its flags parsed), writes no record, and the report must
// name its shard as missing. A ConfigMap left with its placeholders must be
// refused as a usage error rather than waited on.
func TestManifestRunsAsShards(t *testing.T) {
	if testing.Short() {
		t.Skip("builds closeload and runs a short sharded load on loopback")
	}
	m := load(t)
	pod := m.job.Spec.Template.Spec
	c := only(t, "job", pod)
	n := int(*m.job.Spec.Completions)
	bin := binarytest.Closeload(t)
	dir := t.TempDir()

	t.Run("placeholders refused", func(t *testing.T) {
		args := podArgs(t, m, c, 0, nil, dir)
		code, out := runBin(t, bin, args)
		if code != 2 {
			t.Fatalf("with the ConfigMap's placeholders: exit %d, want 2 (usage)\n%s", code, out)
		}
		t.Logf("placeholders: %s", strings.TrimSpace(out))
	})

	scenario := flagValue(t, c.Args, "scenario")
	addr, stopServe := startServe(t, bin, scenario)
	runID := "k8s-manifest-test"
	startAt := time.Now().Add(1500 * time.Millisecond).UTC().Format(time.RFC3339Nano)
	const totalCycles = 400 // the manifest runs --duration 60s; a test bounds it
	type result struct {
		code int
		out  string
		err  error
	}
	res := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		target := addr
		if i == n-1 {
			target = closedPort(t)
		}
		args := podArgs(t, m, c, i, map[string]string{"TARGET": target, "START_AT": startAt, "RUN_ID": runID}, dir)
		if got := flagValue(t, args, "shard"); got != fmt.Sprintf("%d/%d", i, n) {
			t.Fatalf("index %d: --shard %s", i, got)
		}
		args = append(args, "--cycles", fmt.Sprint(totalCycles))
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i].code, res[i].out, res[i].err = execBin(bin, args)
		}()
	}
	wg.Wait()
	served := stopServe()
	for i, r := range res {
		if r.err != nil {
			t.Fatalf("index %d: %v", i, r.err)
		}
		want := 0
		if i == n-1 {
			want = 1
		}
		if r.code != want || (i == n-1 && !strings.Contains(r.out, "refused")) {
			t.Fatalf("index %d: exit %d, want %d\n%s", i, r.code, want, r.out)
		}
	}

	// The shards that ran sum to their slices of --cycles; the failed one
	// is missing, not dropped.
	runDir := filepath.Join(dir, runID)
	var recs []*results.Run
	var want uint64
	for i := 0; i < n-1; i++ {
		r, err := results.ReadFile(filepath.Join(runDir, fmt.Sprintf("shard-%d.json", i)))
		if err != nil {
			t.Fatal(err)
		}
		if r.ID != runID || r.Shard == nil || r.Shard.Index != i || r.Shard.Count != n {
			t.Fatalf("shard-%d.json: id %q shard %+v", i, r.ID, r.Shard)
		}
		want += uint64(results.ShardSlice(totalCycles, i, n))
		recs = append(recs, r)
	}
	if _, err := os.Stat(filepath.Join(runDir, fmt.Sprintf("shard-%d.json", n-1))); !os.IsNotExist(err) {
		t.Fatalf("the failed shard left a record (%v)", err)
	}
	merged, missing, err := results.Merge(recs)
	if err != nil {
		t.Fatal(err)
	}
	if merged.Totals.Cycles != want || len(missing) != 1 || missing[0] != (results.MissingShard{RunID: runID, Index: n - 1, Count: n}) {
		t.Fatalf("merged cycles %d (want %d), missing %v (want shard %d/%d)", merged.Totals.Cycles, want, missing, n-1, n)
	}
	t.Logf("served: %s", strings.TrimSpace(served))

	// The report Job's command line on the shared directory.
	rc := only(t, "report", m.report.Spec.Template.Spec)
	rargs := podArgs(t, m, rc, 0, map[string]string{"RUN_ID": runID}, dir)
	code, out := runBin(t, bin, rargs)
	if code != 0 {
		t.Fatalf("report: exit %d\n%s", code, out)
	}
	t.Logf("report:\n%s", out)
	for _, s := range []string{
		fmt.Sprintf("%s (%d shards, 1 missing)", runID, n),
		fmt.Sprintf("run %s: shard %d/%d missing", runID, n-1, n),
	} {
		if !strings.Contains(out, s) {
			t.Errorf("report does not say %q:\n%s", s, out)
		}
	}
}
