package metrics

import (
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Exporter serves one run's figures to Prometheus. It has a registry of its
// own (not the global one), so two runs in one process, or a test, never
// mix their series; every series carries the run_id label.
type Exporter struct {
	reg      *prometheus.Registry
	provider atomic.Pointer[Provider]
}

// New returns an Exporter whose series carry run_id=runID. Until
// SetProvider is called it serves no closeload series. It also serves the
// process's own CPU, memory and descriptors (process_*) and Go runtime
// figures (go_*), so a dashboard can tell a saturated generator from a
// saturated target.
func New(runID string) *Exporter {
	e := &Exporter{reg: prometheus.NewRegistry()}
	e.reg.MustRegister(
		newLiveCollector(runID, e.currentProvider),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
	)
	return e
}

// SetProvider sets the function each scrape reads the figures from; it may
// be called at any time, for example when a run's pool starts.
func (e *Exporter) SetProvider(p Provider) {
	if p == nil {
		e.provider.Store(nil)
		return
	}
	e.provider.Store(&p)
}

func (e *Exporter) currentProvider() Provider {
	if p := e.provider.Load(); p != nil {
		return *p
	}
	return nil
}

// Gatherer is the exporter's registry, for callers that serve or push it
// their own way.
func (e *Exporter) Gatherer() prometheus.Gatherer { return e.reg }

// Handler serves the figures in the Prometheus text format, or OpenMetrics
// when the scraper asks for it. A provider mistake (the same series twice)
// drops the offending series, not the scrape: a live view keeps going.
func (e *Exporter) Handler() http.Handler {
	return promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{EnableOpenMetrics: true, ErrorHandling: promhttp.ContinueOnError})
}
