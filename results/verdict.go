package results

// Verdict statuses: what a run's exit status says, in the record.
const (
	// VerdictOK: the run did its work and every threshold held.
	VerdictOK = "ok"
	// VerdictFailed: the run did not do its work (nothing completed, the
	// target refused or vanished, a shard failed, a fault stopped it).
	VerdictFailed = "failed"
	// VerdictThreshold: the run worked, but a threshold failed.
	VerdictThreshold = "threshold-failed"
	// VerdictInterrupted: a signal stopped the run; its figures cover
	// what was measured until then.
	VerdictInterrupted = "interrupted"
)

// Verdict is the one-line judgement of a run, and why.
type Verdict struct {
	Status string `json:"status"`
	// Reasons say why the run failed or was interrupted.
	Reasons []string `json:"reasons,omitempty"`
	// Thresholds are the run's criteria, each held or failed, with the
	// measured value.
	Thresholds []ThresholdResult `json:"thresholds,omitempty"`
}

// ThresholdResult is one criterion of a run (k6-style, "total.p99<5ms")
// with what was measured.
type ThresholdResult struct {
	Expr string `json:"expr"`
	Held bool   `json:"held"`
	// Value is the measured value in Unit ("ns", "ratio", "1/s", "count").
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	// Missing is set when the record has no such figure (a phase the
	// scenario does not have): the threshold then fails.
	Missing bool `json:"missing,omitempty"`
}
