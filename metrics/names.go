package metrics

// Metric names, label names and label values: the one list the exporter,
// the Grafana dashboard and its test agree on. Names follow the Prometheus
// conventions: a closeload_ prefix, _total on counters, base units
// (seconds, bytes) in the name.
const (
	// ConnectionAttempts counts connections started (client) or accepted
	// (target), labelled scenario and side.
	ConnectionAttempts = "closeload_connection_attempts_total"
	// Connections counts connections that ended, by scenario, side and
	// outcome (completed, error, unfinished); attempts minus their sum is
	// the number in flight.
	Connections = "closeload_connections_total"
	// Errors counts failed connections by scenario, side and class.
	Errors = "closeload_errors_total"
	// Bytes counts payload bytes by scenario, side and direction.
	Bytes = "closeload_bytes_total"
	// InFlight is the number of connections started and not yet ended.
	InFlight = "closeload_in_flight"
	// Held is the number of connections a side holds open on purpose (the
	// hold scenarios), by side.
	Held = "closeload_held_connections"
	// LateStarts counts open-loop connections that started after their
	// intended time (coordinated omission made visible).
	LateStarts = "closeload_late_starts_total"
	// PhaseSeconds is the latency histogram of one phase of a connection.
	PhaseSeconds = "closeload_phase_seconds"
	// SocketStates is the number of TCP sockets in a state, by side.
	SocketStates = "closeload_socket_states"
	// SocketOrphans is the number of those sockets with no descriptor left
	// (orphans, the ones tcp_fin_timeout and tcp_max_orphans act on).
	SocketOrphans = "closeload_socket_orphans"
	// PortSocketStates is the number of TCP sockets in a state whose local
	// or remote port is the port label (closeload watch).
	PortSocketStates = "closeload_port_socket_states"
	// StateTransitions counts the kernel's TCP state transitions of the
	// run's sockets, from the kernel event tracer.
	StateTransitions = "closeload_state_transitions_total"
	// Resets counts RST segments of the run's sockets, from the tracer.
	Resets = "closeload_resets_total"
	// KernelCounter is a kernel event counter (/proc/net/netstat, snmp),
	// labelled with its nstat-style name.
	KernelCounter = "closeload_kernel_counter_total"
	// KernelLevel is a kernel level (/proc/net/sockstat: sockets in use,
	// TIME_WAIT, orphans, memory pages), labelled with its name.
	KernelLevel = "closeload_kernel_level"
)

// Label names.
const (
	LabelRunID     = "run_id"
	LabelScenario  = "scenario"
	LabelSide      = "side"
	LabelOutcome   = "outcome"
	LabelClass     = "class"
	LabelDirection = "direction"
	LabelPhase     = "phase"
	LabelState     = "state"
	LabelPort      = "port"
	LabelFrom      = "from"
	LabelTo        = "to"
	LabelCounter   = "counter"
)

// Values of the outcome, side and direction labels.
const (
	OutcomeCompleted  = "completed"
	OutcomeError      = "error"
	OutcomeUnfinished = "unfinished"

	SideClient = "client"
	SideTarget = "target"
	// SideAll labels socket states counted without telling sides apart
	// (closeload watch: every socket it counts).
	SideAll = "all"

	DirectionSent     = "sent"
	DirectionReceived = "received"
)

// histogramSuffixes are the series names Prometheus derives from a
// histogram family.
var histogramSuffixes = []string{"_bucket", "_sum", "_count"}

// SeriesNames returns every series name the exporter can serve: each
// family's name, and for histograms the _bucket, _sum and _count series a
// PromQL query names. A dashboard may use only these.
func SeriesNames() []string {
	var out []string
	for _, d := range families {
		if d.histogram {
			for _, s := range histogramSuffixes {
				out = append(out, d.name+s)
			}
			continue
		}
		out = append(out, d.name)
	}
	return out
}
