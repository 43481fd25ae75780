package metrics

import (
	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/workload"
)

// Provider returns the figures of the run as they stand now. The Exporter
// calls it once per scrape, from the scraping goroutine; it must be safe to
// call concurrently with the run (read atomics, take copies).
type Provider func() Live

// Live is one snapshot of a run's figures, as plain data. Every counter is
// cumulative since the process started (warm-up included): Prometheus
// computes rates itself. A zero field is simply not exported.
type Live struct {
	Scenarios []ScenarioLive
	// States counts TCP sockets: side -> state name -> sockets.
	States map[string]map[string]uint64
	// Held counts connections a side holds open on purpose (the hold
	// scenarios): side -> connections. The workload keeps one figure per
	// side, not per scenario.
	Held map[string]uint64
	// Orphans counts those without a descriptor: side -> state -> sockets.
	Orphans map[string]map[string]uint64
	// Ports counts sockets per watched port (closeload watch).
	Ports []PortStates
	// Events holds the kernel event tracer's counts; nil when it does not
	// run.
	Events *KernelEvents
	// Counters are kernel counters by nstat-style name ("TcpExt.TW",
	// "Sockstat.TCP.tw"), as collector.ReadCounters returns them.
	Counters map[string]int64
}

// ScenarioLive is what one side did for one scenario.
type ScenarioLive struct {
	Scenario string
	// Side is SideClient or SideTarget.
	Side string
	// Attempts counts connections started (accepted on the target side).
	Attempts uint64
	// Completed counts connections that ran their scenario to the end.
	Completed uint64
	// Errors counts failed connections by class (workload.ErrorClassNames).
	Errors [workload.NumErrorClasses]uint64
	// Unfinished counts connections still open when the run stopped; it
	// stays 0 while the run goes on.
	Unfinished    uint64
	BytesSent     uint64
	BytesReceived uint64
	// InFlight is attempts not yet ended.
	InFlight   uint64
	LateStarts uint64
	// Phases are cumulative latency histograms in nanoseconds, one per
	// phase (collector.PhaseNames); nil or empty ones are not exported.
	// They are labelled by scenario only (a latency sink holds both sides
	// of a storm together): set them on one side of a scenario.
	Phases [collector.NumPhases]*hdrhistogram.Histogram
}

// PortStates is one port's row of closeload watch.
type PortStates struct {
	Port   uint16
	States map[string]uint64
}

// Transition is one kind of kernel TCP state change and how often it
// happened.
type Transition struct {
	From, To string
	Count    uint64
}

// KernelEvents are the counts of the kernel event tracer.
type KernelEvents struct {
	Transitions    []Transition
	ResetsSent     uint64
	ResetsReceived uint64
}

// FromCounts turns one side's workload counters for one scenario into a
// ScenarioLive; the caller adds Unfinished and Phases. In flight is
// attempts minus ended connections; the counters are read one after another
// while the run goes on, so it is clamped at zero.
func FromCounts(scenario, side string, c workload.Counts) ScenarioLive {
	s := ScenarioLive{
		Scenario: scenario, Side: side,
		Attempts: c.Attempts, Completed: c.Cycles, Errors: c.Errors,
		BytesSent: c.Sent, BytesReceived: c.Received, LateStarts: c.LateStarts,
	}
	if ended := c.Cycles + c.ErrorTotal(); c.Attempts > ended {
		s.InFlight = c.Attempts - ended
	}
	return s
}

// StateMaps turns a census into the States and Orphans maps of one side:
// only states with sockets appear.
func StateMaps(c *collector.Counts) (states, orphans map[string]uint64) {
	states = map[string]uint64{}
	orphans = map[string]uint64{}
	for name, sc := range c.Map() {
		states[name] = sc.Total
		if sc.Orphaned > 0 {
			orphans[name] = sc.Orphaned
		}
	}
	return states, orphans
}
