package collector

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/closeload/closeload/report"
	"github.com/closeload/closeload/results"
)

func TestNewSamplerValidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  SamplerConfig
		err  error
		flag string
	}{
		{"interval below 10ms", SamplerConfig{Interval: 5 * time.Millisecond, Source: SourceProc}, ErrInterval, "interval"},
		{"negative interval", SamplerConfig{Interval: -time.Second, Source: SourceProc}, ErrInterval, "interval"},
		{"unknown source", SamplerConfig{Source: "bpf"}, ErrSource, "collector source"},
		{"ebpf without targets", SamplerConfig{Source: SourceEBPF}, ErrTracerConfig, "target ports"},
		{"port 0", SamplerConfig{Source: SourceProc, Ports: []uint16{0}}, ErrBadPort, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewSampler(tc.cfg)
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.flag) {
				t.Fatalf("err %v, want %v naming %q", err, tc.err, tc.flag)
			}
		})
	}
	s, err := NewSampler(SamplerConfig{ProcRoot: "testdata/proc-ipv6", Source: SourceProc, Interval: 10 * time.Millisecond})
	if err != nil {
		t.Fatalf("10ms is the minimum and is accepted: %v", err)
	}
	s.Stop()
}

// copyTree copies a fixture procfs root so a test can change it.
func copyTree(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	os.MkdirAll(filepath.Join(to, "net"), 0o755)
	ents, _ := os.ReadDir(filepath.Join(from, "net"))
	for _, e := range ents {
		b := readFixture(t, filepath.Join(from, "net", e.Name()))
		os.WriteFile(filepath.Join(to, "net", e.Name()), b, 0o644)
	}
	return to
}

func TestSamplerFixture(t *testing.T) {
	root := copyTree(t, "testdata/proc-ipv6")
	var mu sync.Mutex
	w := WorkloadCounts{}
	var notified int
	s, err := NewSampler(SamplerConfig{
		ProcRoot: root, Source: SourceProc, Interval: 10 * time.Millisecond, Ports: []uint16{8080},
		Workload: func() WorkloadCounts {
			mu.Lock()
			defer mu.Unlock()
			w.Cycles += 5
			w.Errors++
			w.Held = 3
			return w
		},
		OnSample: func(results.Sample) { notified++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	// Counters move between the baseline and the end: TcpExt.TW 10 -> 25.
	b := readFixture(t, filepath.Join(root, "net", "netstat"))
	os.WriteFile(filepath.Join(root, "net", "netstat"), []byte(strings.Replace(string(b), "TcpExt: 0 1 2 3 4 5 6 7 8 9 10 ", "TcpExt: 0 1 2 3 4 5 6 7 8 9 25 ", 1)), 0o644)
	s.Start()
	time.Sleep(60 * time.Millisecond)
	r := s.Stop()
	if len(r.Series) < 2 || r.Health.Samples != len(r.Series) || notified != len(r.Series) {
		t.Fatalf("%d samples, health %+v, %d notified", len(r.Series), r.Health, notified)
	}
	if r.Health.Source != SourceProc || r.Health.ParseErrors == 0 {
		t.Errorf("health %+v: want source proc and the fixture's malformed lines counted", r.Health)
	}
	want := map[string]results.StateCount{
		"LISTEN": {Total: 2}, "ESTABLISHED": {Total: 3}, "TIME_WAIT": {Total: 3},
		"FIN_WAIT2": {Total: 3, Orphaned: 2}, "CLOSE_WAIT": {Total: 2},
		"LAST_ACK": {Total: 1, Orphaned: 1}, "SYN_SENT": {Total: 1}, "SYN_RECV": {Total: 1},
	}
	if !equalStates(r.Peaks, want) {
		t.Errorf("peaks %v\nwant %v", r.Peaks, want)
	}
	var tw int64
	var cycles uint64
	for _, x := range r.Series {
		tw += x.Counters["TcpExt.TW"]
		cycles += x.Cycles
		if x.Held != 3 {
			t.Errorf("held %d", x.Held)
		}
	}
	if tw != 15 {
		t.Errorf("TcpExt.TW deltas over the series sum to %d, want 15", tw)
	}
	if cycles != uint64(5*len(r.Series)) {
		t.Errorf("cycles %d over %d samples", cycles, len(r.Series))
	}
	found := false
	for _, d := range r.Counters {
		if d.Name == "TcpExt.TW" {
			found = d.Delta == 15 && d.Scope == ScopeNetns
		}
	}
	if !found {
		t.Errorf("whole-run TcpExt.TW delta missing or wrong: %v", r.Counters)
	}
}

// TestSamplerSourceFails removes the counter files during the run: samples
// say what they lack, the health says why, and the run goes on.
func TestSamplerSourceFails(t *testing.T) {
	root := copyTree(t, "testdata/proc-ipv6")
	s, err := NewSampler(SamplerConfig{ProcRoot: root, Source: SourceProc, Interval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"netstat", "snmp", "sockstat", "sockstat6", "tcp", "tcp6"} {
		os.Remove(filepath.Join(root, "net", f))
	}
	s.Start()
	time.Sleep(40 * time.Millisecond)
	r := s.Stop()
	if len(r.Series) == 0 {
		t.Fatal("no samples")
	}
	for _, x := range r.Series {
		if len(x.Missing) != 2 || x.States != nil {
			t.Fatalf("sample %+v: want states and counters missing", x)
		}
	}
	if r.Health.Source != "none" || len(r.Health.Errors) < 2 {
		t.Fatalf("health %+v", r.Health)
	}
	if !strings.Contains(strings.Join(r.Health.Errors, "\n"), "times)") {
		t.Errorf("repeated errors are counted, not repeated: %v", r.Health.Errors)
	}
	var b strings.Builder
	report.WriteKernelSummary(&b, runOf(r))
	if !strings.Contains(b.String(), "TIME_WAIT n/a") || !strings.Contains(b.String(), "TW n/a") || !strings.Contains(b.String(), "error:") || r.Counters != nil {
		t.Errorf("summary must say n/a, not 0, and show errors:\n%s", b.String())
	}
}

func TestSamplerCPUBudget(t *testing.T) {
	s, err := NewSampler(SamplerConfig{ProcRoot: "testdata/proc-ipv6", Source: SourceProc, Interval: 10 * time.Millisecond, MaxCPU: 1e-9})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	time.Sleep(60 * time.Millisecond)
	r := s.Stop()
	if r.Health.Throttled == 0 || r.Health.Throttled >= len(r.Series) {
		t.Fatalf("throttled %d of %d samples", r.Health.Throttled, len(r.Series))
	}
	if r.Series[0].States == nil || r.Series[len(r.Series)-1].States == nil {
		t.Error("the first and the final sample always count states")
	}
	for _, x := range r.Series[1 : len(r.Series)-1] {
		if x.States != nil || len(x.Missing) != 1 || x.Missing[0] != "states" {
			t.Errorf("throttled sample %+v", x)
		}
	}
	var b strings.Builder
	report.WriteKernelSummary(&b, runOf(r))
	if !strings.Contains(b.String(), "to keep within") {
		t.Errorf("summary does not mention throttling:\n%s", b.String())
	}
}

func TestSamplerStopWithoutStart(t *testing.T) {
	s, err := NewSampler(SamplerConfig{ProcRoot: "testdata/proc-noipv6", Source: SourceProc})
	if err != nil {
		t.Fatal(err)
	}
	r := s.Stop()
	if len(r.Series) != 1 || r.Health.Samples != 1 || len(r.Health.Notes) != 1 {
		t.Fatalf("one final sample with the tcp6 note expected: %+v", r)
	}
	s.Start() // after Stop: no effect, no panic
	if r2 := s.Stop(); len(r2.Series) != 1 {
		t.Fatal("Stop is idempotent")
	}
}

func TestAutoFallsBackToProc(t *testing.T) {
	old := openNetlinkSource
	defer func() { openNetlinkSource = old }()
	openNetlinkSource = func(string, []int, *portSet) (source, error) {
		return nil, errors.New("sock_diag: socket: permission denied")
	}
	s, err := NewSampler(SamplerConfig{ProcRoot: "testdata/proc-ipv6", Interval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r := s.Stop()
	if r.Health.Source != SourceProc || !strings.Contains(r.Health.FallbackReason, "permission denied") {
		t.Fatalf("health %+v", r.Health)
	}
	if _, err := NewSampler(SamplerConfig{ProcRoot: "testdata/proc-ipv6", Source: SourceNetlink}); err == nil {
		t.Fatal("an explicit netlink source that is refused must be an error")
	}
	var b strings.Builder
	report.WriteKernelSummary(&b, runOf(r))
	if strings.Count(b.String(), "permission denied") != 1 {
		t.Errorf("the fallback is said once:\n%s", b.String())
	}
}

func TestWriteSummaryNotSampled(t *testing.T) {
	var b strings.Builder
	report.WriteKernelSummary(&b, &results.Run{Collector: &results.CollectorHealth{Errors: []string{"--interval 1ms: too short"}}})
	if strings.Contains(b.String(), " 0") || !strings.Contains(b.String(), "not sampled") || !strings.Contains(b.String(), "too short") {
		t.Fatalf("a run without samples must not print zeros:\n%s", b.String())
	}
}

// runOf puts a sampler's result in a record, as the runner does, for the
// summary renderer.
func runOf(r SamplerResult) *results.Run {
	h := r.Health
	return &results.Run{Series: r.Series, Counters: r.Counters, Peaks: r.Peaks, PeakSides: r.PeakSides, Collector: &h, KernelEvents: r.Events}
}
