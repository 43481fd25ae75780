// Package results is the contract between the side that produces measurements
// (workload, collector, sysctl) and the side that compares them (report): one
// versioned Run record per execution of one variant, written atomically and
// mergeable across shards.
package results

import "time"

// SchemaVersion is bumped whenever a field changes meaning or disappears, so
// that a reader can refuse a record it would misread instead of guessing.
const SchemaVersion = 1

// Run is everything one execution of one variant produced. It is plain data:
// readers in other tools (jq, Python) must be able to use it without closeload.
type Run struct {
	Schema int `json:"schema"`
	// ID names the run; shards of one run share it.
	ID string `json:"id"`
	// Shard is set when this record is one slice of a sharded run.
	Shard *Shard `json:"shard,omitempty"`
	// Matrix and Variant place the run inside a matrix; Repeat counts from 0.
	Matrix  string `json:"matrix,omitempty"`
	Variant string `json:"variant,omitempty"`
	Repeat  int    `json:"repeat,omitempty"`

	Provenance Provenance `json:"provenance"`
	Config     Config     `json:"config"`
	Sysctls    Sysctls    `json:"sysctls"`

	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// MeasuredSeconds is the window the figures cover: the run less warm-up,
	// up to the stop; rates divide by it.
	MeasuredSeconds float64 `json:"measured_seconds"`
	// GraceSeconds is how long connections in flight took to end after the
	// stop (at most the grace period); it is not part of the measured
	// window.
	GraceSeconds float64 `json:"grace_seconds,omitempty"`
	// Interrupted is true when a signal or an error ended the run early; the
	// figures then cover only what was measured before that.
	Interrupted     bool   `json:"interrupted"`
	InterruptReason string `json:"interrupt_reason,omitempty"`

	// Scenarios holds one entry per scenario of the mix, in mix order.
	Scenarios []ScenarioResult `json:"scenarios"`
	// Totals sums the scenarios.
	Totals Totals `json:"totals"`

	// Series is the collector's per-interval view of the run (issue: collector).
	Series []Sample `json:"series,omitempty"`
	// Counters holds kernel counter deltas over the whole run.
	Counters []CounterDelta `json:"counters,omitempty"`
	// Peaks holds the highest socket-state counts seen in any sample.
	Peaks map[string]StateCount `json:"peaks,omitempty"`
	// PeakSides splits Peaks by side (SideClient, SideTarget).
	PeakSides map[string]map[string]StateCount `json:"peak_sides,omitempty"`
	// KernelEvents is what the eBPF tracer counted, when it served.
	KernelEvents *KernelEvents `json:"kernel_events,omitempty"`
	// Collector reports how well sampling went.
	Collector *CollectorHealth `json:"collector,omitempty"`
	// Storm is set for storm-shaped runs.
	Storm *StormResult `json:"storm,omitempty"`
	// Verdict says whether the run did its work and its thresholds held.
	Verdict *Verdict `json:"verdict,omitempty"`
	// Census is what the run found before it started, in a namespace it
	// shared with earlier activity; nil in a fresh namespace.
	Census *Census `json:"census,omitempty"`
	// Notes are remarks about how the run was made that a reader of its
	// figures needs: a fallback to the host namespace, what earlier runs
	// left on the host.
	Notes []string `json:"notes,omitempty"`
	// Outages are the stretches in which the target refused every
	// connection (a restart ridden out), in order.
	Outages []Outage `json:"outages,omitempty"`
}

// Outage is a stretch of a run in which connections were refused and none
// completed: from the first refusal to the first completed connection
// after it. End is zero when the target still refused at the stop.
type Outage struct {
	Start   time.Time `json:"start"`
	End     time.Time `json:"end,omitzero"`
	Refused uint64    `json:"refused"`
}

// HoldWaits says how often and for how long connections waited for room
// in a full holder (the descriptor bound): back-pressure a summary names.
type HoldWaits struct {
	Count    uint64 `json:"count"`
	WaitedNs int64  `json:"waited_ns"`
}

// Shard says which slice of a run a record holds, so a merge can tell when
// one is missing.
type Shard struct {
	Index int `json:"index"`
	Count int `json:"count"`
}

// Provenance says where a result came from, so two results are only compared
// when it makes sense to.
type Provenance struct {
	Tool       string   `json:"tool"`
	Version    string   `json:"version"`
	GoVersion  string   `json:"go_version"`
	Kernel     string   `json:"kernel"`
	Hostname   string   `json:"hostname"`
	Cores      int      `json:"cores"`
	GOMAXPROCS int      `json:"gomaxprocs"`
	Args       []string `json:"args"`
	// Namespace says where the run happened: "host", "isolated" (a fresh
	// network namespace) or "isolated-userns" (with a user namespace).
	Namespace string `json:"namespace"`
	PID       int    `json:"pid"`
}

// Config is the configuration the run was made with: every flag that changes
// what is measured. Report groups records whose Config (less sysctls) agrees.
type Config struct {
	Mix           []MixEntry    `json:"mix"`
	Target        string        `json:"target,omitempty"`
	BuiltinTarget bool          `json:"builtin_target"`
	Shape         string        `json:"shape"` // closed, open, storm
	Conns         int           `json:"conns"`
	Rate          float64       `json:"rate,omitempty"`
	Arrival       string        `json:"arrival,omitempty"`
	Duration      time.Duration `json:"duration_ns"`
	Warmup        time.Duration `json:"warmup_ns"`
	Cycles        uint64        `json:"cycles,omitempty"`
	Sources       []string      `json:"sources,omitempty"`
	RequestSize   int           `json:"request_size"`
	ResponseSize  int           `json:"response_size"`
	Hold          time.Duration `json:"hold_ns"`
	Timeout       time.Duration `json:"timeout_ns"`
	Request       string        `json:"request,omitempty"` // "", "http" or "@file"
	Interval      time.Duration `json:"interval_ns"`
	// Storm fields are set for the storm shape.
	Storm       int           `json:"storm,omitempty"`
	StormWindow time.Duration `json:"storm_window_ns,omitempty"`
	Closer      string        `json:"closer,omitempty"`
	Procs       int           `json:"procs,omitempty"`
	StartAt     time.Time     `json:"start_at,omitempty"`
	// OnRefused is "stop" or "continue"; StallTimeout is how long a run of
	// faults with nothing completed may last before the run stops.
	OnRefused    string        `json:"on_refused,omitempty"`
	StallTimeout time.Duration `json:"stall_timeout_ns,omitempty"`
}

// MixEntry is one scenario of the mix with its weight.
type MixEntry struct {
	Scenario string `json:"scenario"`
	Weight   int    `json:"weight"`
}

// Sysctls records the kernel settings around the run, so a comparison can say
// what differed. Keys are dotted names (net.ipv4.tcp_tw_reuse).
type Sysctls struct {
	// Applied is what the variant set; empty for the host's own settings.
	Applied map[string]string `json:"applied,omitempty"`
	Before  map[string]string `json:"before,omitempty"`
	After   map[string]string `json:"after,omitempty"`
	// Mode is "isolated", "host" or "none".
	Mode string `json:"mode"`
}

// ScenarioResult is what one scenario of the mix did.
type ScenarioResult struct {
	Name   string `json:"name"`
	Weight int    `json:"weight"`
	// Cycles counts connections that completed the scenario without error.
	Cycles uint64 `json:"cycles"`
	// Rate is Cycles per measured second.
	Rate float64 `json:"rate"`
	// Attempts counts every started connection: Attempts = Cycles + the
	// error counts + the Unfinished counts.
	Attempts uint64 `json:"attempts"`
	// Unfinished maps a phase (connect, first_byte, drain, held) to the
	// connections still in it when the stop ended them after the grace
	// period: neither completed nor failed.
	Unfinished map[string]uint64 `json:"unfinished,omitempty"`
	// LateStarts counts open-loop arrivals that started after their intended
	// time because every worker was busy (coordinated omission made visible).
	LateStarts uint64 `json:"late_starts,omitempty"`
	// Errors maps an error class to its count and one example message.
	Errors map[string]ErrorCount `json:"errors,omitempty"`
	Bytes  Bytes                 `json:"bytes"`
	// Phases maps a phase name (connect, first_byte, drain, total) to its
	// latency summary and mergeable histogram.
	Phases map[string]Phase `json:"phases"`
	// Observed counts what the kernel showed the client at close time: EOF
	// seen, reset seen; it is how tests and verify check a choreography.
	Observed Observed `json:"observed"`
	// Target is what the built-in target saw of this scenario; nil against
	// an external target.
	Target *TargetSide `json:"target,omitempty"`
}

// TargetSide is the built-in target's view of one scenario: how many
// connections it accepted and served to their end, what failed, and how the
// connections ended as it saw them.
type TargetSide struct {
	Accepted  uint64                `json:"accepted"`
	Completed uint64                `json:"completed"`
	Errors    map[string]ErrorCount `json:"errors,omitempty"`
	// Unfinished maps a phase to the connections the target was still
	// serving when it was closed: Accepted = Completed + errors + these.
	Unfinished map[string]uint64 `json:"unfinished,omitempty"`
	Bytes      Bytes             `json:"bytes"`
	Observed   Observed          `json:"observed"`
}

// ErrorCount is how often one class of error happened, with one example so
// the user sees the real errno text.
type ErrorCount struct {
	Count   uint64 `json:"count"`
	Example string `json:"example,omitempty"`
}

// Bytes counts payload moved by the client halves.
type Bytes struct {
	Sent     uint64 `json:"sent"`
	Received uint64 `json:"received"`
	// Verified counts received bytes that were checked against what was sent
	// (stream-echo) and matched.
	Verified uint64 `json:"verified,omitempty"`
}

// Observed counts how connections ended as seen from the client.
type Observed struct {
	EOF   uint64 `json:"eof"`
	Reset uint64 `json:"reset"`
	// LostResponses counts connections whose response did not arrive whole
	// before the connection ended (unread-close shows it).
	LostResponses uint64 `json:"lost_responses,omitempty"`
}

// Phase is one phase's latency, in nanoseconds.
type Phase struct {
	Count  int64   `json:"count"`
	Min    int64   `json:"min_ns"`
	Max    int64   `json:"max_ns"`
	Mean   float64 `json:"mean_ns"`
	StdDev float64 `json:"stddev_ns"`
	P50    int64   `json:"p50_ns"`
	P90    int64   `json:"p90_ns"`
	P99    int64   `json:"p99_ns"`
	P999   int64   `json:"p999_ns"`
	P9999  int64   `json:"p9999_ns"`
	// Histogram is the HdrHistogram V2 compressed encoding (base64), with the
	// geometry of HistogramLowest..HistogramHighest at HistogramDigits.
	Histogram string `json:"histogram"`
}

// Totals sums the scenarios of a run.
type Totals struct {
	Cycles     uint64                `json:"cycles"`
	Attempts   uint64                `json:"attempts"`
	Rate       float64               `json:"rate"`
	LateStarts uint64                `json:"late_starts,omitempty"`
	Errors     map[string]ErrorCount `json:"errors,omitempty"`
	Bytes      Bytes                 `json:"bytes"`
	// Unfinished sums the scenarios' unfinished connections by phase.
	Unfinished map[string]uint64 `json:"unfinished,omitempty"`
	// ClientHoldWaits and TargetHoldWaits count waits for room in the
	// client's and the built-in target's holders.
	ClientHoldWaits *HoldWaits `json:"client_hold_waits,omitempty"`
	TargetHoldWaits *HoldWaits `json:"target_hold_waits,omitempty"`
}

// StormResult is what a storm run measured beyond the per-phase histograms.
type StormResult struct {
	Opened uint64 `json:"opened"`
	// Closed counts connections that ended in EOF; Failed those that ended in
	// a classified error; Unaccounted must be zero.
	Closed      uint64 `json:"closed"`
	Failed      uint64 `json:"failed"`
	Unaccounted uint64 `json:"unaccounted"`
	// Unfinished maps a phase (held, drain) to connections a stop ended
	// before they were gone: Opened = Closed + Failed + these.
	Unfinished map[string]uint64 `json:"unfinished,omitempty"`
	// HoldPeak is the most connections held at once.
	HoldPeak uint64 `json:"hold_peak"`
	// TimeToLastClose is from the start of the close window to the last
	// connection gone, in nanoseconds.
	TimeToLastClose int64 `json:"time_to_last_close_ns"`
}

// Accounted reports whether every connection the scenario started ended in
// exactly one place: Attempts = Cycles + errors + Unfinished. Records made
// before unfinished connections were counted may fail it after a forced
// stop.
func (s *ScenarioResult) Accounted() bool {
	return s.Attempts == s.Cycles+ErrorTotal(s.Errors)+CountTotal(s.Unfinished)
}

// Accounted is ScenarioResult.Accounted for the sums of a run.
func (t *Totals) Accounted() bool {
	return t.Attempts == t.Cycles+ErrorTotal(t.Errors)+CountTotal(t.Unfinished)
}
