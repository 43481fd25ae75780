package metrics

import (
	"strconv"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/workload"
	"github.com/prometheus/client_golang/prometheus"
)

// family is one metric family the exporter serves.
type family struct {
	name, help string
	kind       prometheus.ValueType
	histogram  bool
	labels     []string
}

// families lists every metric family with its help text and labels; the
// index constants below name them.
var families = [...]family{
	famAttempts:    {name: ConnectionAttempts, help: "Connections started (client side) or accepted (target side).", kind: prometheus.CounterValue, labels: []string{LabelScenario, LabelSide}},
	famConnections: {name: Connections, help: "Connections that ended, by outcome: completed, error, or unfinished at the stop.", kind: prometheus.CounterValue, labels: []string{LabelScenario, LabelSide, LabelOutcome}},
	famErrors:      {name: Errors, help: "Failed connections by error class.", kind: prometheus.CounterValue, labels: []string{LabelScenario, LabelSide, LabelClass}},
	famBytes:       {name: Bytes, help: "Payload bytes by direction.", kind: prometheus.CounterValue, labels: []string{LabelScenario, LabelSide, LabelDirection}},
	famInFlight:    {name: InFlight, help: "Connections started and not yet ended.", kind: prometheus.GaugeValue, labels: []string{LabelScenario, LabelSide}},
	famHeld:        {name: Held, help: "Connections a side holds open on purpose (hold scenarios).", kind: prometheus.GaugeValue, labels: []string{LabelSide}},
	famLate:        {name: LateStarts, help: "Open-loop connections started after their intended time.", kind: prometheus.CounterValue, labels: []string{LabelScenario, LabelSide}},
	famPhase:       {name: PhaseSeconds, help: "Latency of one phase of a connection (connect, first_byte, drain, total).", histogram: true, labels: []string{LabelScenario, LabelPhase}},
	famStates:      {name: SocketStates, help: "TCP sockets in a state, by side.", kind: prometheus.GaugeValue, labels: []string{LabelSide, LabelState}},
	famOrphans:     {name: SocketOrphans, help: "TCP sockets in a state with no file descriptor left (orphans).", kind: prometheus.GaugeValue, labels: []string{LabelSide, LabelState}},
	famPorts:       {name: PortSocketStates, help: "TCP sockets in a state whose local or remote port is the port label.", kind: prometheus.GaugeValue, labels: []string{LabelPort, LabelState}},
	famTransitions: {name: StateTransitions, help: "Kernel TCP state transitions of the run's sockets.", kind: prometheus.CounterValue, labels: []string{LabelFrom, LabelTo}},
	famResets:      {name: Resets, help: "RST segments of the run's sockets, by direction.", kind: prometheus.CounterValue, labels: []string{LabelDirection}},
	famCounter:     {name: KernelCounter, help: "Kernel TCP event counter (/proc/net/netstat, /proc/net/snmp).", kind: prometheus.CounterValue, labels: []string{LabelCounter}},
	famLevel:       {name: KernelLevel, help: "Kernel TCP level (/proc/net/sockstat and the like).", kind: prometheus.GaugeValue, labels: []string{LabelCounter}},
}

const (
	famAttempts = iota
	famConnections
	famErrors
	famBytes
	famInFlight
	famHeld
	famLate
	famPhase
	famStates
	famOrphans
	famPorts
	famTransitions
	famResets
	famCounter
	famLevel
	numFamilies
)

// liveCollector is the prometheus.Collector behind an Exporter: at each
// scrape it calls the provider once and turns the snapshot into constant
// metrics. It keeps no state between scrapes.
type liveCollector struct {
	descs    [numFamilies]*prometheus.Desc
	provider func() Provider
}

func newLiveCollector(runID string, provider func() Provider) *liveCollector {
	c := &liveCollector{provider: provider}
	constLabels := prometheus.Labels{LabelRunID: runID}
	for i, f := range families {
		c.descs[i] = prometheus.NewDesc(f.name, f.help, f.labels, constLabels)
	}
	return c
}

// Describe sends every family's descriptor, so the registry checks what
// Collect sends against them.
func (c *liveCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect calls the provider and sends its figures.
func (c *liveCollector) Collect(ch chan<- prometheus.Metric) {
	p := c.provider()
	if p == nil {
		return
	}
	l := p()
	for i := range l.Scenarios {
		c.scenario(ch, &l.Scenarios[i])
	}
	for side, n := range l.Held {
		c.emit(ch, famHeld, float64(n), side)
	}
	c.states(ch, famStates, l.States)
	c.states(ch, famOrphans, l.Orphans)
	for _, ps := range l.Ports {
		port := strconv.Itoa(int(ps.Port))
		for st, n := range ps.States {
			c.emit(ch, famPorts, float64(n), port, st)
		}
	}
	if e := l.Events; e != nil {
		for _, t := range e.Transitions {
			c.emit(ch, famTransitions, float64(t.Count), t.From, t.To)
		}
		c.emit(ch, famResets, float64(e.ResetsSent), DirectionSent)
		c.emit(ch, famResets, float64(e.ResetsReceived), DirectionReceived)
	}
	for name, v := range l.Counters {
		fam := famCounter
		if collector.IsGauge(name) {
			fam = famLevel
		}
		c.emit(ch, fam, float64(v), name)
	}
}

func (c *liveCollector) scenario(ch chan<- prometheus.Metric, s *ScenarioLive) {
	sc, side := s.Scenario, s.Side
	c.emit(ch, famAttempts, float64(s.Attempts), sc, side)
	var errs uint64
	for k, n := range s.Errors {
		errs += n
		c.emit(ch, famErrors, float64(n), sc, side, workload.ErrorClassNames[k])
	}
	c.emit(ch, famConnections, float64(s.Completed), sc, side, OutcomeCompleted)
	c.emit(ch, famConnections, float64(errs), sc, side, OutcomeError)
	c.emit(ch, famConnections, float64(s.Unfinished), sc, side, OutcomeUnfinished)
	c.emit(ch, famBytes, float64(s.BytesSent), sc, side, DirectionSent)
	c.emit(ch, famBytes, float64(s.BytesReceived), sc, side, DirectionReceived)
	c.emit(ch, famInFlight, float64(s.InFlight), sc, side)
	c.emit(ch, famLate, float64(s.LateStarts), sc, side)
	for p, h := range s.Phases {
		if h == nil || h.TotalCount() == 0 {
			continue
		}
		count, sum, buckets := promBuckets(h)
		ch <- prometheus.MustNewConstHistogram(c.descs[famPhase], count, sum, buckets, sc, collector.PhaseNames[p])
	}
}

func (c *liveCollector) states(ch chan<- prometheus.Metric, fam int, m map[string]map[string]uint64) {
	for side, states := range m {
		for st, n := range states {
			c.emit(ch, fam, float64(n), side, st)
		}
	}
}

// emit sends one sample of a counter or gauge family; the registry sorts
// what it gathers, so map order does not matter.
func (c *liveCollector) emit(ch chan<- prometheus.Metric, fam int, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(c.descs[fam], families[fam].kind, v, labels...)
}
