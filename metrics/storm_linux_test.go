package metrics_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/internal/nstest"
	"github.com/closeload/closeload/metrics"
	"github.com/closeload/closeload/workload"
	dto "github.com/prometheus/client_model/go"
)

// gathered returns the value of the one series of family name whose labels
// include want, from a gather of e.
func gathered(t *testing.T, e *metrics.Exporter, name string, want map[string]string) (float64, bool) {
	t.Helper()
	fams, err := e.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
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
			return metricValue(m), true
		}
	}
	return 0, false
}

func metricValue(m *dto.Metric) float64 {
	return m.GetCounter().GetValue() + m.GetGauge().GetValue()
}

// TestStormProvider scrapes a real storm while it holds its connections and
// after it ended, and checks the figures against the storm's own counts.
func TestStormProvider(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		const n = 300
		scen := workload.ClientHalfClose
		closer, _ := workload.StormCloser(scen)
		sink := collector.NewLatencySink(1)
		hold := 400 * time.Millisecond
		target, err := workload.StartStormTarget(workload.StormTargetConfig{
			Listen: netip.MustParseAddrPort("127.0.0.1:0"), Scenario: scen, Closer: closer,
			Window: 100 * time.Millisecond, Hold: hold, ResponseSize: 32,
		}, sink)
		if err != nil {
			t.Fatal(err)
		}
		defer target.Close()
		st, err := workload.NewStorm(workload.StormConfig{
			N: n, Scenario: scen, Closer: closer, Hold: hold, Window: 100 * time.Millisecond,
			Timeout: 5 * time.Second, Sources: workload.DefaultSources(netip.MustParseAddr("127.0.0.1"))[:8],
			Target: target.Addr(), OnClose: target.ScheduleClose,
		}, sink)
		if err != nil {
			t.Fatal(err)
		}
		e := metrics.New("storm")
		e.SetProvider(metrics.StormProvider(scen, st, target, sink))
		done := make(chan error, 1)
		go func() { done <- st.Run(context.Background()) }()
		client := map[string]string{"side": metrics.SideClient}
		var peak float64
	wait:
		for range 400 { // bounded: 400 × 25 ms
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
				break wait
			case <-time.After(25 * time.Millisecond):
			}
			if v, _ := gathered(t, e, metrics.Held, client); v > peak {
				peak = v
			}
		}
		if peak < n*0.9 || peak > n {
			t.Errorf("held connections peaked at %v while the storm held, want within [%v, %d]", peak, n*0.9, n)
		}
		c := st.Counts()
		checks := []struct {
			name   string
			labels map[string]string
			want   uint64
		}{
			{metrics.ConnectionAttempts, map[string]string{"side": "client"}, c.Attempts},
			{metrics.Connections, map[string]string{"side": "client", "outcome": "completed"}, c.Closed},
			{metrics.Connections, map[string]string{"side": "client", "outcome": "error"}, c.ErrorTotal()},
			{metrics.Bytes, map[string]string{"side": "client", "direction": "received"}, c.Received},
			{metrics.Held, client, c.Held},
		}
		for _, ck := range checks {
			if got, ok := gathered(t, e, ck.name, ck.labels); !ok || got != float64(ck.want) {
				t.Errorf("%s%v = %v (served %v), storm counts %d", ck.name, ck.labels, got, ok, ck.want)
			}
		}
		if c.Closed < n*0.99 {
			t.Errorf("storm closed %d of %d", c.Closed, n)
		}
	})
}
