package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/closeload/closeload/internal/binarytest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/closeload/closeload/internal/nstest"
	"github.com/closeload/closeload/results"
	"github.com/closeload/closeload/sysctl"
)

func TestParseSweep(t *testing.T) {
	tests := []struct {
		spec string
		want Sweep
		msg  string
	}{
		{spec: "net.ipv4.tcp_tw_reuse=0,1", want: Sweep{"net.ipv4.tcp_tw_reuse", []string{"0", "1"}}},
		{spec: "net.ipv4.ip_local_port_range=1024 65000, 32768  60999", want: Sweep{"net.ipv4.ip_local_port_range", []string{"1024 65000", "32768 60999"}}},
		{spec: "net.ipv4.tcp_fin_timeout=15", want: Sweep{"net.ipv4.tcp_fin_timeout", []string{"15"}}},
		{spec: "net.ipv4.tcp_tw_reuse", msg: "KEY=V1"},
		{spec: "net.ipv4.tcp_tw_reuse=0,3", msg: "out of range"},
		{spec: "net.ipv4.tcp_tw_reuse=0,,1", msg: "want an integer"},
		{spec: "net.ipv4.tcp_tw_reuse=1,1", msg: "given twice"},
		{spec: "tcp_tw_reuse=0,1", msg: "did you mean net.ipv4.tcp_tw_reuse"},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := ParseSweep(tc.spec, false)
			if tc.msg != "" {
				if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("err = %v, want a usage error saying %q", err, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Key != tc.want.Key || strings.Join(got.Values, "|") != strings.Join(tc.want.Values, "|") {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseVariants(t *testing.T) {
	good := `# compare reuse
baseline: net.ipv4.tcp_tw_reuse=2

reuse: net.ipv4.tcp_tw_reuse=1, net.ipv4.tcp_tw_reuse_delay=100
net.ipv4.tcp_fin_timeout=15,net.ipv4.ip_local_port_range=1024 65000
`
	vs, err := ParseVariants(strings.NewReader(good), "v.txt", false)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"baseline", "reuse", "net.ipv4.tcp_fin_timeout=15,net.ipv4.ip_local_port_range=1024 65000"}
	if len(vs) != len(want) {
		t.Fatalf("got %d variants: %+v", len(vs), vs)
	}
	for i, v := range vs {
		if v.Name != want[i] {
			t.Errorf("variant %d name %q, want %q", i, v.Name, want[i])
		}
	}
	if len(vs[1].Sysctls) != 2 || vs[1].Sysctls[1] != (sysctl.Assignment{Key: "net.ipv4.tcp_tw_reuse_delay", Value: "100"}) {
		t.Errorf("reuse variant: %+v", vs[1].Sysctls)
	}
	bad := []struct{ name, text, msg string }{
		{"empty file", "# nothing\n\n", "no variants"},
		{"no assignment", "base:\n", "v.txt:1: no KEY=VALUE"},
		{"bad value on line 2", "a: net.ipv4.tcp_tw_reuse=1\nb: net.ipv4.tcp_tw_reuse=9\n", "v.txt:2"},
		{"unknown key", "net.ipv4.tcp_tw_reus=1\n", "did you mean net.ipv4.tcp_tw_reuse"},
		{"duplicate name", "a: net.ipv4.tcp_tw_reuse=1\na: net.ipv4.tcp_tw_reuse=0\n", "already on line 1"},
		{"duplicate key", "net.ipv4.tcp_tw_reuse=1, net.ipv4.tcp_tw_reuse=0\n", "set twice"},
		{"bad name", "a b: net.ipv4.tcp_tw_reuse=1\n", "variant name"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseVariants(strings.NewReader(tc.text), "v.txt", false)
			if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want a usage error saying %q", err, tc.msg)
			}
		})
	}
}

func names(vs []Variant) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.Name
	}
	return out
}

func TestExpandVariants(t *testing.T) {
	reuse := Sweep{"net.ipv4.tcp_tw_reuse", []string{"0", "1"}}
	delay := Sweep{"net.ipv4.tcp_tw_reuse_delay", []string{"100", "1000"}}
	vs, err := ExpandVariants(nil, []Sweep{reuse, delay})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"net.ipv4.tcp_tw_reuse=0,net.ipv4.tcp_tw_reuse_delay=100",
		"net.ipv4.tcp_tw_reuse=0,net.ipv4.tcp_tw_reuse_delay=1000",
		"net.ipv4.tcp_tw_reuse=1,net.ipv4.tcp_tw_reuse_delay=100",
		"net.ipv4.tcp_tw_reuse=1,net.ipv4.tcp_tw_reuse_delay=1000",
	}
	if got := names(vs); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	for i, v := range vs {
		if v.Index != i || len(v.Sysctls) != 2 {
			t.Errorf("variant %d: %+v", i, v)
		}
	}
	file := []Variant{{Name: "a", Sysctls: []sysctl.Assignment{{Key: "net.ipv4.tcp_fin_timeout", Value: "15"}}},
		{Name: "b", Sysctls: []sysctl.Assignment{{Key: "net.ipv4.tcp_fin_timeout", Value: "60"}}}}
	vs, err = ExpandVariants(file, []Sweep{reuse})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(vs); strings.Join(got, "|") != "a,net.ipv4.tcp_tw_reuse=0|a,net.ipv4.tcp_tw_reuse=1|b,net.ipv4.tcp_tw_reuse=0|b,net.ipv4.tcp_tw_reuse=1" {
		t.Fatalf("file × sweep: %q", got)
	}
	if vs, _ := ExpandVariants(file, nil); len(vs) != 2 || vs[1].Index != 1 {
		t.Fatalf("file only: %+v", vs)
	}
	if _, err := ExpandVariants(nil, []Sweep{reuse, reuse}); !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "set twice") {
		t.Fatalf("same key twice: %v", err)
	}
	conflict := []Variant{{Name: "x", Sysctls: []sysctl.Assignment{{Key: "net.ipv4.tcp_tw_reuse", Value: "1"}}}}
	if _, err := ExpandVariants(conflict, []Sweep{reuse}); !errors.Is(err, ErrUsage) {
		t.Fatalf("file and sweep set the same key: %v", err)
	}
	if _, err := ExpandVariants(nil, nil); !errors.Is(err, ErrUsage) {
		t.Fatalf("no variants: %v", err)
	}
	many := make([]string, 20)
	for i := range many {
		many[i] = strconv.Itoa(i + 1)
	}
	big := []Sweep{{"net.ipv4.tcp_fin_timeout", many}, {"net.core.somaxconn", many}}
	if _, err := ExpandVariants(nil, big); !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("400 variants: %v", err)
	}
}

func TestScheduleInterleaves(t *testing.T) {
	vs, _ := ExpandVariants(nil, []Sweep{{"net.ipv4.tcp_tw_reuse", []string{"0", "1", "2"}}})
	runs := Schedule("m", vs, 2)
	var got []string
	for _, r := range runs {
		got = append(got, fmt.Sprintf("v%d.r%d", r.Variant, r.Repeat))
	}
	if want := "v0.r0 v1.r0 v2.r0 v0.r1 v1.r1 v2.r1"; strings.Join(got, " ") != want {
		t.Fatalf("order %q, want %q (A B C A B C)", strings.Join(got, " "), want)
	}
	seen := map[string]bool{}
	for _, r := range runs {
		if seen[r.File] || seen[r.RunID] || r.Status != RunPending {
			t.Errorf("run %+v: file or id not unique, or not pending", r)
		}
		seen[r.File], seen[r.RunID] = true, true
	}
}

func TestMatrixCheck(t *testing.T) {
	reuse, _ := ExpandVariants(nil, []Sweep{{"net.ipv4.tcp_tw_reuse", []string{"0", "1"}}})
	mem, _ := ExpandVariants(nil, []Sweep{{"net.ipv4.tcp_mem", []string{"1 2 3"}}})
	tests := []struct {
		name string
		o    MatrixOptions
		msg  string
	}{
		{"ok", MatrixOptions{Variants: reuse, Repeat: 2}, ""},
		{"repeat 0", MatrixOptions{Variants: reuse, Repeat: 0}, "--repeat 0"},
		{"repeat huge", MatrixOptions{Variants: reuse, Repeat: 1000}, "--repeat 1000"},
		{"global key isolated", MatrixOptions{Variants: mem, Repeat: 1}, "global"},
		{"external target isolated", MatrixOptions{Variants: reuse, Repeat: 1, Target: "10.0.0.1:80"}, "--host-sysctl"},
		{"bad id", MatrixOptions{Variants: reuse, Repeat: 1, ID: "../x"}, "--matrix-id"},
	}
	if os.Geteuid() != 0 {
		tests = append(tests, struct {
			name string
			o    MatrixOptions
			msg  string
		}{"host without root", MatrixOptions{Variants: reuse, Repeat: 1, Host: true}, "needs root"})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Check()
			if tc.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want a usage error saying %q", err, tc.msg)
			}
		})
	}
}

// fakeChildEnv makes TestMatrixFakeChild act as `closeload run`: it writes
// a record from its flags, so matrix orchestration is tested without load.
const fakeChildEnv = "CLOSELOAD_MATRIX_FAKE_CHILD"

// TestMatrixFakeChild is not a test: it is the fake child process.
func TestMatrixFakeChild(t *testing.T) {
	if os.Getenv(fakeChildEnv) == "" {
		return
	}
	os.Exit(fakeChild())
}

func fakeChild() int {
	var args []string
	for i, a := range os.Args {
		if a == "--" {
			args = os.Args[i+1:]
			break
		}
	}
	if len(args) == 0 || args[0] != "run" {
		fmt.Fprintln(os.Stderr, "fake child: want run, got", args)
		return 3
	}
	flags := map[string]string{}
	applied := map[string]string{}
	for _, a := range args[1:] {
		k, v, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if k == "sysctl" {
			sk, sv, _ := strings.Cut(v, "=")
			applied[sk] = sv
			continue
		}
		flags[k] = v
	}
	if log := os.Getenv("FAKE_LOG"); log != "" {
		f, _ := os.OpenFile(log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		fmt.Fprintf(f, "%s r%s %s\n", flags["variant"], flags["repeat-index"], flags["conns"])
		f.Close()
	}
	switch os.Getenv("FAKE_MODE") {
	case "usage":
		fmt.Fprintln(os.Stderr, "closeload: --conns 0: want a whole number from 1 to 100000")
		return 2
	case "fail-reuse-1":
		if applied["net.ipv4.tcp_tw_reuse"] == "1" {
			fmt.Fprintln(os.Stderr, "closeload: boom")
			return 1
		}
	}
	fmt.Println("fake summary for", flags["run-id"])
	repeat, _ := strconv.Atoi(flags["repeat-index"])
	reuse := applied["net.ipv4.tcp_tw_reuse"] == "1"
	rate, recycled, ana := 1000.0+float64(repeat)*100, int64(0), uint64(50)
	if reuse {
		rate, recycled, ana = 3000+float64(repeat)*100, 700, 0
	}
	before := map[string]string{"net.ipv4.tcp_tw_reuse": "2"}
	rec := &results.Run{
		ID: flags["run-id"], Matrix: flags["matrix-id"], Variant: flags["variant"], Repeat: repeat,
		Sysctls: results.Sysctls{Mode: "isolated", Applied: applied, Before: before, After: applied},
		Start:   time.Now(), End: time.Now(), MeasuredSeconds: 1,
		Totals: results.Totals{Rate: rate, Cycles: uint64(rate),
			Errors: map[string]results.ErrorCount{"addr-not-available": {Count: ana}}},
		Counters: []results.CounterDelta{{Name: "TcpExt.TWRecycled", Delta: recycled, Scope: "netns"}},
		Peaks:    map[string]results.StateCount{"TIME_WAIT": {Total: 28000}},
	}
	if ana == 0 {
		rec.Totals.Errors = nil
	}
	if err := results.Write(flags["out"], rec); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func fakeOptions(t *testing.T, mode string) (MatrixOptions, string) {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "calls.log")
	vs, err := ExpandVariants(nil, []Sweep{{"net.ipv4.tcp_tw_reuse", []string{"0", "1"}}})
	if err != nil {
		t.Fatal(err)
	}
	return MatrixOptions{
		ID: "m1", Dir: filepath.Join(dir, "results"), Variants: vs, Repeat: 2,
		RunArgs: []string{"--conns=3"},
		Exe:     os.Args[0], ExeArgs: []string{"-test.run=^TestMatrixFakeChild$", "--"},
		Env: []string{fakeChildEnv + "=1", "FAKE_LOG=" + log, "FAKE_MODE=" + mode},
	}, log
}

func TestRunMatrixFake(t *testing.T) {
	o, log := fakeOptions(t, "")
	var out bytes.Buffer
	o.Stdout = &out
	idx, recs, err := RunMatrix(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	calls, _ := os.ReadFile(log)
	want := "net.ipv4.tcp_tw_reuse=0 r0 3\nnet.ipv4.tcp_tw_reuse=1 r0 3\nnet.ipv4.tcp_tw_reuse=0 r1 3\nnet.ipv4.tcp_tw_reuse=1 r1 3\n"
	if string(calls) != want {
		t.Fatalf("children ran as\n%s\nwant interleaved, every run flag passed:\n%s", calls, want)
	}
	dir := filepath.Join(o.Dir, "m1")
	for i, r := range idx.Runs {
		if r.Status != RunOK || recs[i] == nil {
			t.Errorf("run %d: %+v", i, r)
		}
		if _, err := os.Stat(filepath.Join(dir, r.File)); err != nil {
			t.Errorf("record missing: %v", err)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, r.Log)); !strings.Contains(string(b), "fake summary for "+r.RunID) {
			t.Errorf("child's stdout not in %s: %q", r.Log, b)
		}
	}
	read, err := ReadMatrixIndex(filepath.Join(dir, MatrixIndexFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(read.Runs) != 4 || read.Interrupted || read.Finished.IsZero() || read.Mode != "isolated" {
		t.Errorf("index: %+v", read)
	}
	text := out.String()
	for _, s := range []string{"[1/4] net.ipv4.tcp_tw_reuse=0  repeat 0", "[4/4] net.ipv4.tcp_tw_reuse=1  repeat 1"} {
		if !strings.Contains(text, s) {
			t.Errorf("progress lacks %q:\n%s", s, text)
		}
	}
	// A second matrix with the same id is refused, not mixed in.
	if _, _, err := RunMatrix(context.Background(), o); !errors.Is(err, ErrUsage) {
		t.Errorf("same matrix id again: %v", err)
	}
}

func TestRunMatrixStopsOnUsageError(t *testing.T) {
	o, log := fakeOptions(t, "usage")
	idx, _, err := RunMatrix(context.Background(), o)
	if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "--conns 0") {
		t.Fatalf("err = %v, want a usage error quoting the child", err)
	}
	calls, _ := os.ReadFile(log)
	if n := strings.Count(string(calls), "\n"); n != 1 {
		t.Errorf("%d children started after a usage error, want 1", n)
	}
	if idx.Runs[0].Status != RunFailed || idx.Runs[1].Status != RunPending {
		t.Errorf("index runs: %+v", idx.Runs)
	}
}

func TestRunMatrixFailedRunContinues(t *testing.T) {
	o, _ := fakeOptions(t, "fail-reuse-1")
	idx, recs, err := RunMatrix(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "2 of 4 runs failed") {
		t.Fatalf("err = %v", err)
	}
	for i, r := range idx.Runs {
		wantOK := r.Variant == 0
		if (r.Status == RunOK) != wantOK || (recs[i] != nil) != wantOK {
			t.Errorf("run %d: %+v", i, r)
		}
	}
}

func TestRunMatrixCancelled(t *testing.T) {
	o, log := fakeOptions(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	idx, _, err := RunMatrix(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if !idx.Interrupted {
		t.Error("index not marked interrupted")
	}
	if b, _ := os.ReadFile(log); len(b) != 0 {
		t.Errorf("children ran after cancel: %s", b)
	}
}

// TestMatrixEndToEnd runs the matrix with real `closeload run`
// children (shortened): as this user, and as uid 65534 when root. The host's
// /proc/sys must read the same before and after; every record must show
// its variant in effect inside its own namespace.
func TestMatrixEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds closeload and runs 8 short loads")
	}
	if nstest.Inside() {
		t.Skip("inside a test namespace")
	}
	bin := binarytest.Closeload(t)
	// Results go where every uid of the test may write: uid 65534 runs too.
	dir, err := os.MkdirTemp("", "closeload-matrix-e2e")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	host := sysctl.Snapshot("")
	args := []string{"matrix", "--sysctl", "net.ipv4.tcp_tw_reuse=0,1", "--scenario", "client-halfclose",
		"--duration", "1s", "--conns", "2", "--repeat", "2", "--interval", "250ms"}

	type who struct {
		name string
		cred *syscall.Credential
		ns   string
	}
	users := []who{{"self", nil, "isolated"}}
	if os.Geteuid() != 0 {
		users[0].ns = "isolated-userns"
	} else {
		users = append(users, who{"uid 65534", &syscall.Credential{Uid: 65534, Gid: 65534}, "isolated-userns"})
	}
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			id := "e2e-" + strings.ReplaceAll(u.name, " ", "")
			cmd := exec.Command(bin, append(args, "--results", dir, "--matrix-id", id)...)
			cmd.Dir = dir
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.cred, Pdeathsig: syscall.SIGKILL}
			out, err := cmd.CombinedOutput()
			if err != nil {
				if u.cred != nil && strings.Contains(string(out), "cannot create an isolated network namespace") {
					t.Skipf("uid 65534 may not create user namespaces here: %s", out)
				}
				if strings.Contains(string(out), "cannot create an isolated network namespace") {
					nstest.Unavailable(t, string(out))
				}
				t.Fatalf("closeload matrix: %v\n%s", err, out)
			}
			for _, s := range []string{"tcp_tw_reuse=0", "tcp_tw_reuse=1", "TWRecycled", "addr-not-avail", "cycles/s"} {
				if !strings.Contains(string(out), s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
			idx, err := ReadMatrixIndex(filepath.Join(dir, id, MatrixIndexFile))
			if err != nil {
				t.Fatal(err)
			}
			var starts []time.Time
			for _, r := range idx.Runs {
				rec, err := results.ReadFile(filepath.Join(dir, id, r.File))
				if err != nil {
					t.Fatalf("run %s: %v", r.RunID, err)
				}
				want := strconv.Itoa(r.Variant) // variant 0 → reuse 0, 1 → reuse 1
				s := rec.Sysctls
				if s.Mode != "isolated" || rec.Provenance.Namespace != u.ns ||
					s.Applied["net.ipv4.tcp_tw_reuse"] != want || s.After["net.ipv4.tcp_tw_reuse"] != want {
					t.Errorf("run %s: mode %q ns %q applied %v after %q", r.RunID, s.Mode, rec.Provenance.Namespace, s.Applied, s.After["net.ipv4.tcp_tw_reuse"])
				}
				if n := len(sysctl.Keys()); len(s.Before) != n || len(s.After) != n {
					t.Errorf("run %s: before/after hold %d/%d keys, want all %d registry keys", r.RunID, len(s.Before), len(s.After), n)
				}
				if s.Before["net.ipv4.tcp_mem"] != host["net.ipv4.tcp_mem"] {
					t.Errorf("run %s: global tcp_mem %q, want the host's %q", r.RunID, s.Before["net.ipv4.tcp_mem"], host["net.ipv4.tcp_mem"])
				}
				if rec.Totals.Cycles == 0 {
					t.Errorf("run %s: no cycles", r.RunID)
				}
				starts = append(starts, rec.Start)
			}
			if len(starts) != 4 {
				t.Fatalf("%d records, want 4", len(starts))
			}
			for i := 1; i < len(starts); i++ {
				if !starts[i].After(starts[i-1]) {
					t.Errorf("runs not in schedule order (A B A B): %v", starts)
				}
			}
			if now := sysctl.Snapshot(""); !sameMap(host, now) {
				t.Errorf("host /proc/sys changed:\nbefore %v\nafter  %v", host, now)
			}
		})
	}

	t.Run("bad input", func(t *testing.T) {
		bad := []struct {
			args []string
			msg  string
			cred *syscall.Credential
		}{
			{[]string{"--sysctl", "net.ipv4.tcp_mem=1 2 3"}, "global", nil},
			{[]string{"--sysctl", "net.ipv4.tcp_tw_reuse=0,5"}, "out of range", nil},
			{[]string{"--sysctl", "net.ipv4.tcp_tw_reuse"}, "KEY=V1", nil},
			{[]string{"--sysctl", "tcp_tw_reuse=0,1"}, "did you mean net.ipv4.tcp_tw_reuse", nil},
			{[]string{"--sysctl", "net.ipv4.tcp_tw_reuse=0,1", "--conns", "0"}, "--conns", nil},
			{[]string{"--sysctl", "net.ipv4.tcp_tw_reuse=0,1", "--out", "x.json"}, "--out", nil},
			{[]string{"--sysctl", "net.ipv4.tcp_tw_reuse=0,1", "--repeat", "0"}, "--repeat", nil},
			{[]string{"--sysctl", "net.ipv4.tcp_tw_reuse=0,1", "--host-sysctl"}, "needs root", &syscall.Credential{Uid: 65534, Gid: 65534}},
		}
		for i, b := range bad {
			if b.cred != nil && os.Geteuid() != 0 {
				b.cred = nil
			}
			res := filepath.Join(dir, "bad"+strconv.Itoa(i)) // reachable by uid 65534
			os.Mkdir(res, 0o777)
			os.Chmod(res, 0o777)
			cmd := exec.Command(bin, append(append([]string{"matrix", "--results", res}, b.args...), "--duration", "1s")...)
			cmd.Dir = dir
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: b.cred}
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), b.msg) {
				t.Errorf("matrix %q: %v, want exit 2 saying %q:\n%s", b.args, err, b.msg, out)
			}
			if ents, _ := filepath.Glob(filepath.Join(res, "*", "*.json")); len(ents) > 0 {
				t.Errorf("matrix %q wrote %v despite bad input", b.args, ents)
			}
		}
		if now := sysctl.Snapshot(""); !sameMap(host, now) {
			t.Errorf("host /proc/sys changed by bad input")
		}
	})
}

func sameMap(a, b map[string]string) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// TestHostSysctlEndToEnd exercises host mode of the real binary inside a
// namespace this test makes (never on the real host): `closeload run
// --host-sysctl` restores on SIGTERM; after kill -9 the values stay changed
// until `closeload sysctl restore JOURNAL`; a damaged journal restores
// nothing.
func TestHostSysctlEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds closeload")
	}
	nstest.Run(t, func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("host mode needs root")
		}
		bin := binarytest.Closeload(t)
		dir := t.TempDir()
		before := sysctl.Snapshot("")
		start := func(name string) (*exec.Cmd, string) {
			out := filepath.Join(dir, name+".json")
			cmd := exec.Command(bin, "run", "--host-sysctl", "--sysctl", "net.ipv4.tcp_fin_timeout=17",
				"--sysctl", "net.ipv4.tcp_tw_reuse=0", "--scenario", "client-halfclose", "--conns", "1",
				"--duration", "60s", "--out", out)
			var errb strings.Builder
			cmd.Stderr = &errb
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			journal := out + ".sysctl-journal"
			for i := 0; i < 200; i++ {
				if v, _ := sysctl.Read("", "net.ipv4.tcp_fin_timeout"); v == "17" {
					if _, err := os.Stat(journal); err == nil {
						return cmd, journal
					}
				}
				time.Sleep(50 * time.Millisecond)
			}
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("host-mode run did not apply its sysctls within 10s: %s", errb.String())
			return nil, ""
		}
		restored := func(what string) {
			t.Helper()
			if now := sysctl.Snapshot(""); !sameMap(before, now) {
				t.Errorf("%s: not restored:\nbefore %v\nnow    %v", what, before, now)
			}
		}

		cmd, journal := start("term")
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		restored("after SIGTERM")
		if _, err := os.Stat(journal); err == nil {
			t.Error("journal left after SIGTERM")
		}

		cmd, journal = start("kill")
		cmd.Process.Kill()
		cmd.Wait()
		if v, _ := sysctl.Read("", "net.ipv4.tcp_fin_timeout"); v != "17" {
			t.Fatalf("after kill -9 tcp_fin_timeout = %q, want still 17", v)
		}
		good, _ := os.ReadFile(journal)
		os.WriteFile(journal, good[:len(good)-40], 0o600)
		out, err := exec.Command(bin, "sysctl", "restore", journal).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "damaged") {
			t.Errorf("restore of a damaged journal: %v\n%s", err, out)
		}
		if v, _ := sysctl.Read("", "net.ipv4.tcp_fin_timeout"); v != "17" {
			t.Errorf("a damaged journal changed tcp_fin_timeout to %q", v)
		}
		os.WriteFile(journal, good, 0o600)
		out, err = exec.Command(bin, "sysctl", "restore", journal).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "restored net.ipv4.tcp_fin_timeout = "+before["net.ipv4.tcp_fin_timeout"]) {
			t.Errorf("closeload sysctl restore: %v\n%s", err, out)
		}
		restored("after sysctl restore")
		if _, err := os.Stat(journal); err == nil {
			t.Error("journal left after restore")
		}
	})
}
