package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/closeload/closeload/internal/binarytest"
	"github.com/closeload/closeload/workload"

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
		{"repeat 0", MatrixOptions{Variants: reuse, Repeat: 0}, "Repeat 0"},
		{"repeat huge", MatrixOptions{Variants: reuse, Repeat: 1000}, "Repeat 1000"},
		{"global key isolated", MatrixOptions{Variants: mem, Repeat: 1}, "global"},
		{"external target isolated", MatrixOptions{Variants: reuse, Repeat: 1, Plan: Plan{Target: netip.MustParseAddrPort("127.0.0.1:80")}}, "HostSysctl"},
		{"bad id", MatrixOptions{Variants: reuse, Repeat: 1, ID: "../x"}, "Matrix"},
	}
	if os.Geteuid() != 0 {
		tests = append(tests, struct {
			name string
			o    MatrixOptions
			msg  string
		}{"host without root", MatrixOptions{Variants: reuse, Repeat: 1, Plan: Plan{HostSysctl: true}}, "needs root"})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.o.Plan.Target.IsValid() && !tc.o.Plan.HostSysctl {
				tc.o.Plan = shortPlan()
			}
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

// shortPlan is a short real run for matrix tests.
func shortPlan() Plan {
	p := DefaultPlan()
	m, _ := workload.ParseMix("client-halfclose")
	p.Mix, p.Conns, p.Duration, p.Interval = m, 2, 300*time.Millisecond, 100*time.Millisecond
	return p
}

// TestRunMatrixReal runs a small matrix of real runs, each in a fresh
// network namespace made by a child of this test binary: the runs are
// interleaved, every record is in place with its variant in effect, a
// variant the kernel refuses fails alone, and the same id is refused.
func TestRunMatrixReal(t *testing.T) {
	vs, err := ExpandVariants(nil, []Sweep{{"net.ipv4.tcp_tw_reuse", []string{"0", "1"}}})
	if err != nil {
		t.Fatal(err)
	}
	// The kernel refuses a port range below ip_unprivileged_port_start.
	bad := Variant{Index: 2, Name: "refused", Sysctls: []sysctl.Assignment{{Key: "net.ipv4.ip_local_port_range", Value: "100 200"}}}
	vs = append(vs, bad)
	var out bytes.Buffer
	o := MatrixOptions{ID: "m1", Dir: filepath.Join(t.TempDir(), "results"), Variants: vs, Repeat: 2, Plan: shortPlan(), Stdout: &out,
		Summary: func(w io.Writer, r *results.Run) { fmt.Fprintf(w, "summary of %s\n", r.ID) }}
	idx, recs, err := RunMatrix(context.Background(), o)
	if errors.Is(err, sysctl.ErrIsolation) {
		nstest.Unavailable(t, err.Error())
	}
	if err == nil || !strings.Contains(err.Error(), "2 of 6 runs failed") {
		t.Fatalf("err = %v, want the refused variant's 2 runs failed", err)
	}
	dir := filepath.Join(o.Dir, "m1")
	var order []string
	for i, r := range idx.Runs {
		order = append(order, fmt.Sprintf("v%d-r%d", r.Variant, r.Repeat))
		if r.Variant == 2 {
			if r.Status != RunFailed || !strings.Contains(r.Error, "ip_local_port_range") {
				t.Errorf("refused variant's run %d: %+v", i, r)
			}
			continue
		}
		if r.Status != RunOK || recs[i] == nil {
			t.Fatalf("run %d: %+v", i, r)
		}
		rec, err := results.ReadFile(filepath.Join(dir, r.File))
		if err != nil {
			t.Fatal(err)
		}
		want := strconv.Itoa(r.Variant)
		if rec.Sysctls.Applied["net.ipv4.tcp_tw_reuse"] != want || rec.Sysctls.After["net.ipv4.tcp_tw_reuse"] != want ||
			!strings.HasPrefix(rec.Provenance.Namespace, "isolated") || rec.Totals.Cycles == 0 {
			t.Errorf("run %s: applied %v after %q ns %q cycles %d", r.RunID, rec.Sysctls.Applied, rec.Sysctls.After["net.ipv4.tcp_tw_reuse"], rec.Provenance.Namespace, rec.Totals.Cycles)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, r.Log)); !strings.Contains(string(b), "summary of "+r.RunID) {
			t.Errorf("summary not in %s: %q", r.Log, b)
		}
	}
	if got := strings.Join(order, " "); got != "v0-r0 v1-r0 v2-r0 v0-r1 v1-r1 v2-r1" {
		t.Errorf("schedule %s, want interleaved", got)
	}
	read, err := ReadMatrixIndex(filepath.Join(dir, MatrixIndexFile))
	if err != nil || len(read.Runs) != 6 || read.Interrupted || read.Finished.IsZero() || read.Mode != "isolated" {
		t.Errorf("index: %v %+v", err, read)
	}
	if !strings.Contains(out.String(), "[1/6] net.ipv4.tcp_tw_reuse=0  repeat 0") {
		t.Errorf("progress lacks the first run:\n%s", out.String())
	}
	// A second matrix with the same id is refused, not mixed in.
	if _, _, err := RunMatrix(context.Background(), o); !errors.Is(err, ErrUsage) {
		t.Errorf("same matrix id again: %v", err)
	}
}

// TestRunMatrixRefusesBadPlan checks that a plan every run would reject
// stops the matrix before any run or file.
func TestRunMatrixRefusesBadPlan(t *testing.T) {
	vs, _ := ExpandVariants(nil, []Sweep{{"net.ipv4.tcp_tw_reuse", []string{"0", "1"}}})
	p := shortPlan()
	p.Conns = 0
	o := MatrixOptions{ID: "m1", Dir: filepath.Join(t.TempDir(), "results"), Variants: vs, Repeat: 1, Plan: p}
	_, _, err := RunMatrix(context.Background(), o)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "Conns" {
		t.Fatalf("err = %v, want the Conns field named", err)
	}
	if _, err := os.Stat(o.Dir); err == nil {
		t.Errorf("a refused matrix made %s", o.Dir)
	}
}

func TestRunMatrixCancelled(t *testing.T) {
	vs, _ := ExpandVariants(nil, []Sweep{{"net.ipv4.tcp_tw_reuse", []string{"0", "1"}}})
	o := MatrixOptions{ID: "m1", Dir: filepath.Join(t.TempDir(), "results"), Variants: vs, Repeat: 1, Plan: shortPlan()}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	idx, _, err := RunMatrix(ctx, o)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want the cancellation", err)
	}
	if !idx.Interrupted || idx.Runs[0].Status != RunPending {
		t.Errorf("index: interrupted %v runs %+v", idx.Interrupted, idx.Runs)
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
				"--duration", "60s", "--out", out, "--sysctl-journal", out+".sysctl-journal")
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
