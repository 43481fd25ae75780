package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/metrics"
	"github.com/closeload/closeload/results"
	"github.com/closeload/closeload/workload"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// fullLive fills every field, so that every family is served.
func fullLive() metrics.Live {
	var c workload.Counts
	c.Attempts, c.Cycles, c.Sent, c.Received, c.LateStarts = 120, 100, 1600, 1700, 3
	c.Errors[workload.ErrReset] = 7
	c.Errors[workload.ErrAddrNotAvailable] = 5
	s := metrics.FromCounts("client-halfclose", metrics.SideClient, c)
	h := results.NewHistogram()
	for _, v := range []int64{40_000, 90_000, 90_000, 300_000, 2_000_000} { // ns
		_ = h.RecordValue(v)
	}
	s.Phases[collector.PhaseTotal] = h
	states, orphans := map[string]uint64{"TIME_WAIT": 40, "FIN_WAIT2": 3}, map[string]uint64{"FIN_WAIT2": 1}
	return metrics.Live{
		Scenarios: []metrics.ScenarioLive{s, metrics.FromCounts("client-halfclose", metrics.SideTarget, workload.Counts{Attempts: 110, Cycles: 110})},
		States:    map[string]map[string]uint64{metrics.SideClient: states, metrics.SideTarget: {"LISTEN": 1}},
		Orphans:   map[string]map[string]uint64{metrics.SideClient: orphans},
		Held:      map[string]uint64{metrics.SideClient: 2},
		Ports:     []metrics.PortStates{{Port: 9000, States: map[string]uint64{"TIME_WAIT": 40}}},
		Events: &metrics.KernelEvents{
			Transitions: []metrics.Transition{{From: "FIN_WAIT2", To: "CLOSE", Count: 100}},
			ResetsSent:  4, ResetsReceived: 2,
		},
		Counters: map[string]int64{"TcpExt.TWRecycled": 9, "Sockstat.TCP.tw": 40},
	}
}

// scrape fetches url over real HTTP and parses the text format.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// value finds the sample of family name whose labels include want.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("family %s not served", name)
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		return m
	}
	t.Fatalf("%s%v not served", name, want)
	return nil
}

func TestExporterServesEveryFamily(t *testing.T) {
	e := metrics.New("run-1")
	e.SetProvider(fullLive)
	srv, err := metrics.Listen("127.0.0.1:0", e)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	fams := scrape(t, srv.URL())

	for _, name := range metrics.SeriesNames() {
		base := name
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, s); ok && fams[b] != nil && fams[b].GetType() == dto.MetricType_HISTOGRAM {
				base = b
			}
		}
		f := fams[base]
		if f == nil {
			t.Errorf("%s: not served", name)
			continue
		}
		for _, m := range f.GetMetric() {
			if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == "run_id" && l.GetValue() == "run-1" }) {
				t.Errorf("%s: a series without run_id=run-1: %v", name, m.GetLabel())
			}
		}
	}

	client := map[string]string{"scenario": "client-halfclose", "side": "client"}
	with := func(k, v string) map[string]string {
		m := map[string]string{k: v}
		for a, b := range client {
			m[a] = b
		}
		return m
	}
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{metrics.ConnectionAttempts, client, 120},
		{metrics.Connections, with("outcome", "completed"), 100},
		{metrics.Connections, with("outcome", "error"), 12},
		{metrics.Connections, with("outcome", "unfinished"), 0},
		{metrics.Errors, with("class", "reset"), 7},
		{metrics.Errors, with("class", "addr-not-available"), 5},
		{metrics.Errors, with("class", "timeout"), 0},
		{metrics.Bytes, with("direction", "sent"), 1600},
		{metrics.Bytes, with("direction", "received"), 1700},
		{metrics.InFlight, client, 8},
		{metrics.Held, map[string]string{"side": "client"}, 2},
		{metrics.LateStarts, client, 3},
		{metrics.InFlight, map[string]string{"side": "target"}, 0},
		{metrics.SocketStates, map[string]string{"side": "client", "state": "TIME_WAIT"}, 40},
		{metrics.SocketStates, map[string]string{"side": "target", "state": "LISTEN"}, 1},
		{metrics.SocketOrphans, map[string]string{"side": "client", "state": "FIN_WAIT2"}, 1},
		{metrics.PortSocketStates, map[string]string{"port": "9000", "state": "TIME_WAIT"}, 40},
		{metrics.StateTransitions, map[string]string{"from": "FIN_WAIT2", "to": "CLOSE"}, 100},
		{metrics.Resets, map[string]string{"direction": "sent"}, 4},
		{metrics.Resets, map[string]string{"direction": "received"}, 2},
		{metrics.KernelCounter, map[string]string{"counter": "TcpExt.TWRecycled"}, 9},
		{metrics.KernelLevel, map[string]string{"counter": "Sockstat.TCP.tw"}, 40},
	}
	for _, c := range checks {
		t.Run(c.name+"/"+fmt.Sprint(c.labels), func(t *testing.T) {
			m := value(t, fams, c.name, c.labels)
			got := m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
			if got != c.want {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}

	h := value(t, fams, metrics.PhaseSeconds, map[string]string{"scenario": "client-halfclose", "phase": "total"}).GetHistogram()
	if h.GetSampleCount() != 5 {
		t.Errorf("phase histogram count %d, want 5", h.GetSampleCount())
	}
	if s := h.GetSampleSum(); s < 2.5e-3 || s > 2.53e-3 {
		t.Errorf("phase histogram sum %v s, want about 2.52e-3", s)
	}
	want := map[float64]uint64{25e-6: 0, 50e-6: 1, 100e-6: 3, 250e-6: 3, 500e-6: 4, 1e-3: 4, 2.5e-3: 5, 60: 5}
	for _, b := range h.GetBucket() {
		if w, ok := want[b.GetUpperBound()]; ok && b.GetCumulativeCount() != w {
			t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), w)
		}
	}
	if len(h.GetBucket()) != len(metrics.BucketBounds)+1 { // +Inf
		t.Errorf("%d buckets, want %d and +Inf", len(h.GetBucket()), len(metrics.BucketBounds))
	}
	if fams[metrics.PhaseSeconds] != nil && len(fams[metrics.PhaseSeconds].GetMetric()) != 1 {
		t.Errorf("empty phase histograms are served: %d series, want 1", len(fams[metrics.PhaseSeconds].GetMetric()))
	}
}

// closeloadFamilies gathers e and returns the closeload_ family names.
func closeloadFamilies(t *testing.T, e *metrics.Exporter) []string {
	t.Helper()
	fams, err := e.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "closeload_") {
			out = append(out, f.GetName())
		}
	}
	return out
}

func TestExporterWithoutProvider(t *testing.T) {
	e := metrics.New("r")
	if got := closeloadFamilies(t, e); len(got) != 0 {
		t.Errorf("served before SetProvider: %v", got)
	}
	e.SetProvider(fullLive)
	if got := closeloadFamilies(t, e); len(got) == 0 {
		t.Error("nothing served after SetProvider")
	}
	e.SetProvider(nil)
	if got := closeloadFamilies(t, e); len(got) != 0 {
		t.Errorf("served after SetProvider(nil): %v", got)
	}
}

func TestExporterServesProcessFigures(t *testing.T) {
	fams, err := metrics.New("r").Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range fams {
		names[f.GetName()] = true
	}
	for _, n := range []string{"process_cpu_seconds_total", "process_open_fds", "go_goroutines"} {
		if !names[n] {
			t.Errorf("%s not served", n)
		}
	}
}

func TestServeUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- metrics.Serve(ctx, "127.0.0.1:0", metrics.New("r")) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return within 10s of the cancel")
	}
	if err := metrics.Serve(context.Background(), "nohost", metrics.New("r")); !errors.Is(err, metrics.ErrListenAddr) {
		t.Errorf("Serve on a bad address: %v, want ErrListenAddr", err)
	}
}

func TestDuplicateSeriesKeepTheScrape(t *testing.T) {
	e := metrics.New("r")
	e.SetProvider(func() metrics.Live {
		l := fullLive()
		l.Scenarios = append(l.Scenarios, l.Scenarios[0]) // the same series twice
		return l
	})
	if _, err := e.Gatherer().Gather(); err == nil {
		t.Fatal("Gather accepted duplicate series; the test no longer tests anything")
	}
	srv, err := metrics.Listen("127.0.0.1:0", e)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	fams := scrape(t, srv.URL())
	if v := value(t, fams, metrics.SocketStates, map[string]string{"side": "client", "state": "TIME_WAIT"}); v.GetGauge().GetValue() != 40 {
		t.Errorf("TIME_WAIT %v, want 40 despite the duplicates", v.GetGauge().GetValue())
	}
}

func TestOpenMetricsWhenAsked(t *testing.T) {
	e := metrics.New("r")
	e.SetProvider(fullLive)
	srv, err := metrics.Listen("127.0.0.1:0", e)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL(), nil)
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text;") {
		t.Errorf("Content-Type %q, want OpenMetrics", ct)
	}
	if !slices.Contains(strings.Split(string(b), "\n"), "# EOF") {
		t.Errorf("OpenMetrics body lacks # EOF")
	}
}

func TestListenAddr(t *testing.T) {
	tests := []struct {
		in, want string
		err      bool
	}{
		{":9464", "127.0.0.1:9464", false},
		{"127.0.0.1:9464", "127.0.0.1:9464", false},
		{"0.0.0.0:9464", "0.0.0.0:9464", false},
		{"[::1]:9464", "[::1]:9464", false},
		{"localhost:0", "localhost:0", false},
		{"9464", "", true},
		{":http", "", true},
		{":70000", "", true},
		{"", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := metrics.ListenAddr(tt.in)
			if tt.err {
				if !errors.Is(err, metrics.ErrListenAddr) {
					t.Fatalf("ListenAddr(%q) error %v, want ErrListenAddr", tt.in, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ListenAddr(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestListenBusyPort(t *testing.T) {
	e := metrics.New("r")
	a, err := metrics.Listen("127.0.0.1:0", e)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if b, err := metrics.Listen(a.Addr().String(), e); !errors.Is(err, metrics.ErrListenAddr) {
		if b != nil {
			b.Close()
		}
		t.Fatalf("second Listen on %s: %v, want ErrListenAddr", a.Addr(), err)
	}
}

func FuzzListenAddr(f *testing.F) {
	for _, s := range []string{":9464", "0.0.0.0:1", "[::]:80", "x", ":-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := metrics.ListenAddr(s)
		if err != nil {
			if !errors.Is(err, metrics.ErrListenAddr) {
				t.Fatalf("error %v does not wrap ErrListenAddr", err)
			}
			return
		}
		again, err := metrics.ListenAddr(got)
		if err != nil || again != got {
			t.Fatalf("ListenAddr(%q) = %q is not a fixed point: %q, %v", s, got, again, err)
		}
	})
}
