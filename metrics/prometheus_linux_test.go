package metrics_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/internal/nstest"
	"github.com/closeload/closeload/metrics"
	"github.com/closeload/closeload/workload"
)

// scrapeInterval is how often the test's Prometheus scrapes the exporter;
// a scrape may take most of it (a loaded machine, the race detector).
const scrapeInterval = 500 * time.Millisecond

// promServer is a Prometheus process the test started, on loopback only.
type promServer struct {
	api string // http://127.0.0.1:PORT
}

// startPrometheus starts Debian's prometheus with a config scraping target
// (host:port) every scrapeInterval; its data lives in a temp dir, and the
// process is killed by PID when the test ends.
func startPrometheus(t *testing.T, target string) *promServer {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv(nstest.RequireEnv) == "1" {
			t.Fatalf("prometheus not installed (apt-get install prometheus; .ci/run does) and %s=1", nstest.RequireEnv)
		}
		t.Skip("prometheus not installed (apt-get install prometheus)")
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: %[1]s
  scrape_timeout: %[3]s
scrape_configs:
  - job_name: closeload
    static_configs:
      - targets: [%[2]q]
`, scrapeInterval, target, scrapeInterval*9/10)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	listen := freeLoopbackPort(t)
	cmd := exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+listen,
		"--log.level=warn",
	)
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // our own child, by PID
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("prometheus (pid %d) log:\n%s", pid, b)
		}
	})
	p := &promServer{api: "http://" + listen}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.api + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus (pid %d) not ready on %s after 30s: %v", pid, listen, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// query runs an instant PromQL query and returns each series' value by the
// given label (or "" for a single unlabelled result).
func (p *promServer) query(t *testing.T, q, by string) map[string]float64 {
	t.Helper()
	return p.queryAt(t, q, by, time.Time{})
}

// queryAt is query evaluated at time at (zero: now).
func (p *promServer) queryAt(t *testing.T, q, by string, at time.Time) map[string]float64 {
	t.Helper()
	u := p.api + "/api/v1/query?query=" + url.QueryEscape(q)
	if !at.IsZero() {
		u += "&time=" + strconv.FormatFloat(float64(at.UnixMilli())/1e3, 'f', 3, 64)
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	if body.Status != "success" {
		t.Fatalf("query %s: %s %s", q, body.Status, body.Error)
	}
	out := map[string]float64{}
	for _, r := range body.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("query %s: value %v: %v", q, r.Value[1], err)
		}
		out[r.Metric[by]] = v
	}
	return out
}

// samples runs a range-vector query (one series) and returns its raw
// sample values.
func (p *promServer) samples(t *testing.T, q string) []float64 {
	t.Helper()
	resp, err := http.Get(p.api + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Values [][2]any `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	if body.Status != "success" || body.Data.ResultType != "matrix" || len(body.Data.Result) != 1 {
		t.Fatalf("query %s: status %s, %s of %d series; want one matrix series", q, body.Status, body.Data.ResultType, len(body.Data.Result))
	}
	var out []float64
	for _, v := range body.Data.Result[0].Values {
		s, _ := v[1].(string)
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("query %s: value %v: %v", q, v[1], err)
		}
		out = append(out, f)
	}
	return out
}

// TestPrometheusScrapesARun drives a short real run (built-in target, pool,
// latency sink) in a fresh network namespace, lets a real Prometheus scrape
// the exporter while it goes, and checks what Prometheus stored against the
// pool's own counts.
func TestPrometheusScrapesARun(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		scen := workload.ClientHalfClose
		target, err := workload.StartTarget(workload.TargetConfig{
			Listen: netip.MustParseAddrPort("127.0.0.1:0"), Scenarios: []workload.Scenario{scen},
			Acceptors: 2, RequestSize: 16, ResponseSize: 16, Timeout: 5 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer target.Close()
		sink := collector.NewLatencySink(1)
		mix := workload.NewMix(scen)
		pool, err := workload.NewPool(workload.Config{
			Mix: mix, Targets: target.Addrs(), Conns: 2,
			Sources:  workload.DefaultSources(netip.MustParseAddr("127.0.0.1"))[:4],
			Duration: 3 * time.Second, RequestSize: 16, ResponseSize: 16, Timeout: 5 * time.Second,
		}, sink)
		if err != nil {
			t.Fatal(err)
		}
		port := target.Addrs()[0].Port()
		census, err := metrics.OpenCensus(collector.StateQuery{Ports: []uint16{port}})
		if err != nil {
			t.Fatal(err)
		}
		defer census.Close()
		e := metrics.New("prom-test")
		loop := metrics.LoopProvider(mix, pool, target, sink)
		e.SetProvider(func() metrics.Live {
			l := loop()
			if err := census.Fill(&l, metrics.SideAll); err != nil {
				t.Errorf("census: %v", err)
			}
			l.Counters, _ = collector.ReadCounters("")
			return l
		})
		srv, err := metrics.Listen("127.0.0.1:0", e)
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		prom := startPrometheus(t, srv.Addr().String())
		// Prometheus hands new targets to its scrapers after a few seconds:
		// start the run once the exporter has been scraped.
		deadline := time.Now().Add(30 * time.Second)
		for prom.query(t, `up{job="closeload"}`, "")[""] != 1 {
			if time.Now().After(deadline) {
				t.Fatal("prometheus did not scrape the exporter within 30s")
			}
			time.Sleep(scrapeInterval)
		}

		runStart := time.Now()
		if err := pool.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		runEnd := time.Now()
		final := pool.LiveCounts(0)
		if final.Cycles < 100 {
			t.Fatalf("the run completed %d connections; want at least 100 to have something to scrape", final.Cycles)
		}
		completed := fmt.Sprintf(`%s{run_id="prom-test",scenario=%q,side="client",outcome="completed"}`, metrics.Connections, scen)
		// Wait (bounded) for a successful scrape after the run's end (every
		// worker has flushed by then); every check below is evaluated at its
		// time, since a later failed scrape (a loaded machine) marks the
		// series stale.
		var at time.Time
		deadline = time.Now().Add(15 * time.Second)
		for {
			if ts, ok := prom.query(t, "timestamp("+completed+")", "")[""]; ok {
				if at = time.UnixMilli(int64(ts * 1000)); at.After(runEnd) {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no scrape of %s after the run's end within 15s", completed)
			}
			time.Sleep(scrapeInterval)
		}
		if got := prom.queryAt(t, completed, "", at)[""]; got != float64(final.Cycles) {
			t.Errorf("%s = %v, the pool completed %d", completed, got, final.Cycles)
		}

		client := fmt.Sprintf(`{run_id="prom-test",scenario=%q,side="client"}`, scen)
		if got := prom.queryAt(t, metrics.ConnectionAttempts+client, "", at)[""]; got != float64(final.Attempts) {
			t.Errorf("%s = %v, pool attempts %d", metrics.ConnectionAttempts, got, final.Attempts)
		}
		errs := prom.queryAt(t, fmt.Sprintf(`sum(%s%s)`, metrics.Errors, client), "", at)[""]
		if errs != float64(final.ErrorTotal()) {
			t.Errorf("sum of %s = %v, pool errors %d", metrics.Errors, errs, final.ErrorTotal())
		}
		bytes := prom.queryAt(t, metrics.Bytes+client, "direction", at)
		if bytes["sent"] != float64(final.Sent) || bytes["received"] != float64(final.Received) {
			t.Errorf("%s = %v, pool sent %d received %d", metrics.Bytes, bytes, final.Sent, final.Received)
		}
		if got := prom.queryAt(t, metrics.InFlight+client, "", at)[""]; got != 0 {
			t.Errorf("%s = %v after the run, want 0", metrics.InFlight, got)
		}
		// Prometheus scraped while the run went on: a sample lies strictly
		// between nothing and the final count.
		during := 0
		for _, v := range prom.samples(t, fmt.Sprintf(`%s%s[1m]`, metrics.ConnectionAttempts, client)) {
			if v > 0 && v < float64(final.Attempts) {
				during++
			}
		}
		if during == 0 {
			t.Errorf("no scrape during the run: no sample of %s between 0 and %d", metrics.ConnectionAttempts, final.Attempts)
		}
		// The target served what the client completed (its last closes may
		// lag; every connection ended on both sides by now).
		tgt := prom.queryAt(t, fmt.Sprintf(`%s{run_id="prom-test",side="target",outcome="completed"}`, metrics.Connections), "", at)[""]
		if tgt < float64(final.Cycles)*0.99 || tgt > float64(final.Attempts) {
			t.Errorf("target completed %v, want within [%v, %d]", tgt, float64(final.Cycles)*0.99, final.Attempts)
		}

		// Latency: the histogram count is the sink's, the median lies in
		// the bucket of the HdrHistogram's median.
		total := sink.Totals()[0][collector.PhaseTotal]
		cnt := prom.queryAt(t, fmt.Sprintf(`%s_count{run_id="prom-test",phase="total"}`, metrics.PhaseSeconds), "", at)[""]
		if cnt != float64(total.TotalCount()) {
			t.Errorf("%s_count = %v, sink recorded %d", metrics.PhaseSeconds, cnt, total.TotalCount())
		}
		med := prom.queryAt(t, fmt.Sprintf(`histogram_quantile(0.5, %s_bucket{run_id="prom-test",phase="total"})`, metrics.PhaseSeconds), "", at)[""]
		hdrMed := float64(total.ValueAtQuantile(50)) / 1e9
		lo, hi := bucketAround(med)
		if math.IsNaN(med) || hdrMed < lo*0.99 || hdrMed > hi*1.01 {
			t.Errorf("prometheus median %v s (bucket %v..%v), HdrHistogram median %v s", med, lo, hi, hdrMed)
		}

		// Socket states: client-halfclose leaves TIME_WAIT on the client,
		// one per completed connection (some end in RST instead: on a
		// loaded machine up to about a tenth).
		tw := prom.queryAt(t, fmt.Sprintf(`%s{run_id="prom-test",side="all",state="TIME_WAIT"}`, metrics.SocketStates), "", at)[""]
		if tw < float64(final.Cycles)*0.8 || tw > float64(final.Attempts) {
			t.Errorf("TIME_WAIT %v, want within [%v, %d]", tw, float64(final.Cycles)*0.8, final.Attempts)
		}
		// Every dashboard query runs in this Prometheus; those of the
		// figures this run has (no tracer, no watch ports here) show data
		// over the run.
		// Over a window holding the whole run.
		window := strconv.Itoa(int(at.Sub(runStart)/time.Second)+1) + "s"
		queries, variable := dashboardQueries(t)
		if v := prom.queryAt(t, strings.TrimSuffix(strings.TrimPrefix(variable, "label_values("), ", run_id)"), "run_id", at); len(v) == 0 {
			t.Errorf("the run_id variable's query %s finds no series", variable)
		}
		noData := map[string]bool{metrics.PortSocketStates: true, metrics.Resets: true, metrics.StateTransitions: true, metrics.SocketOrphans: true}
		for _, q := range queries {
			expr := resolve(q.Expr, "prom-test", window)
			got := prom.queryAt(t, expr, "", at)
			if len(got) == 0 && !noData[seriesName.FindString(q.Expr)] {
				t.Errorf("panel %q shows nothing over the run: %s", q.Panel, expr)
			}
		}
		rate := prom.queryAt(t, resolve(queries[0].Expr, "prom-test", window), "outcome", at)
		if rate["completed"] <= 0 {
			t.Errorf("panel %q: completed rate %v over the run, want > 0", queries[0].Panel, rate)
		}

		t.Logf("run: %d attempts, %d completed, %d errors; prometheus: TIME_WAIT %v, median total %.1f µs (hdr %.1f µs)",
			final.Attempts, final.Cycles, final.ErrorTotal(), tw, med*1e6, hdrMed*1e6)
	})
}

// bucketAround returns the bounds of the histogram bucket v falls in.
func bucketAround(v float64) (lo, hi float64) {
	for _, b := range metrics.BucketBounds {
		if v <= b {
			return lo, b
		}
		lo = b
	}
	return lo, math.Inf(1)
}
