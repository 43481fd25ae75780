package results

import "time"

// Sample is the collector's view of one interval of a run: socket states at
// its end, kernel counter deltas over it, and what the workload did in it.
type Sample struct {
	T time.Time `json:"t"`
	// Elapsed is seconds since the run started.
	Elapsed float64 `json:"elapsed_s"`
	// States maps a TCP state name (TIME_WAIT, FIN_WAIT2, CLOSE_WAIT, ...) to
	// its count among the run's sockets at sample time.
	States map[string]StateCount `json:"states,omitempty"`
	// Counters maps "TcpExt.TWRecycled"-style names to their delta over the
	// interval.
	Counters map[string]int64 `json:"counters,omitempty"`
	// Cycles and Errors are the workload's completions and failures in the
	// interval; Attempts every connection started in it.
	Cycles   uint64 `json:"cycles"`
	Errors   uint64 `json:"errors"`
	Attempts uint64 `json:"attempts,omitempty"`
	// Held is the number of connections held open at sample time (storms).
	Held uint64 `json:"held,omitempty"`
	// Missing names what this sample lacks because its source failed
	// ("states", "counters"): an absent state then means "not measured",
	// never zero. CollectorHealth.Errors says why.
	Missing []string `json:"missing,omitempty"`
}

// StateCount splits sockets of one state into those that still have a file
// descriptor and orphans: tcp_fin_timeout reaps only orphaned FIN_WAIT_2.
type StateCount struct {
	Total    uint64 `json:"total"`
	Orphaned uint64 `json:"orphaned,omitempty"`
}

// CounterDelta is one kernel counter's change over the whole run. Scope says
// whether the kernel keeps it per network namespace or for the whole host,
// because a global counter also moves with traffic that is not ours.
type CounterDelta struct {
	Name  string `json:"name"`
	Delta int64  `json:"delta"`
	Scope string `json:"scope"` // "netns" or "global"
}

// CollectorHealth says how much the series can be trusted: which source
// produced it, how many samples were taken or missed, and what they cost.
type CollectorHealth struct {
	Source         string   `json:"source"`
	Samples        int      `json:"samples"`
	Missed         int      `json:"missed"`
	MeanCostNs     int64    `json:"mean_cost_ns"`
	MaxCostNs      int64    `json:"max_cost_ns"`
	Errors         []string `json:"errors,omitempty"`
	ParseErrors    uint64   `json:"parse_errors,omitempty"`
	FallbackReason string   `json:"fallback_reason,omitempty"`
	// IntervalNs is the sampling interval; Ports the ports sockets were
	// counted for (empty: every TCP socket).
	IntervalNs int64    `json:"interval_ns,omitempty"`
	Ports      []uint16 `json:"ports,omitempty"`
	// Throttled counts samples whose socket-state count was skipped to keep
	// the sampler within CPUBudget (a share of one core); those samples
	// list "states" in Missing.
	Throttled int     `json:"throttled,omitempty"`
	CPUBudget float64 `json:"cpu_budget,omitempty"`
	// DumpRetries counts sock_diag dumps retried because the kernel marked
	// them interrupted (NLM_F_DUMP_INTR).
	DumpRetries uint64 `json:"dump_retries,omitempty"`
	// DroppedLatencies counts latencies beyond the histograms' 60 s that
	// were left out of them (a storm's total phase spans its hold).
	DroppedLatencies int64 `json:"dropped_latencies,omitempty"`
	// Notes are remarks about the input that are not errors, e.g. a missing
	// /proc/net/tcp6 on a host with IPv6 off.
	Notes []string `json:"notes,omitempty"`
}
