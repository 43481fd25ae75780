package report

import (
	"encoding/json"
	"io"

	"github.com/closeload/closeload/results"
)

// RunSummary is the machine-readable summary of a run (`--format json`):
// the verdict with its thresholds and the headline figures, for scripts and
// CI that need no more of the record.
type RunSummary struct {
	RunID           string                    `json:"run_id"`
	Record          string                    `json:"record,omitempty"`
	Verdict         string                    `json:"verdict"`
	Reasons         []string                  `json:"reasons,omitempty"`
	Thresholds      []results.ThresholdResult `json:"thresholds,omitempty"`
	MeasuredSeconds float64                   `json:"measured_seconds"`
	Namespace       string                    `json:"namespace"`
	Target          string                    `json:"target"`
	Attempts        uint64                    `json:"attempts"`
	Completed       uint64                    `json:"completed"`
	Errors          map[string]uint64         `json:"errors,omitempty"`
	Unfinished      map[string]uint64         `json:"unfinished,omitempty"`
	Rate            float64                   `json:"rate"`
	Scenarios       []ScenarioSummary         `json:"scenarios"`
	Peaks           map[string]uint64         `json:"peaks,omitempty"`
	Notes           []string                  `json:"notes,omitempty"`
}

// ScenarioSummary is one scenario's line of a RunSummary; latencies in
// nanoseconds by phase and percentile.
type ScenarioSummary struct {
	Name       string                      `json:"name"`
	Attempts   uint64                      `json:"attempts"`
	Completed  uint64                      `json:"completed"`
	Rate       float64                     `json:"rate"`
	Errors     map[string]uint64           `json:"errors,omitempty"`
	Unfinished map[string]uint64           `json:"unfinished,omitempty"`
	Phases     map[string]map[string]int64 `json:"phases"`
}

// NewRunSummary condenses a record; record is where it was written.
func NewRunSummary(r *results.Run, record string) RunSummary {
	s := RunSummary{
		RunID: r.ID, Record: record, MeasuredSeconds: r.MeasuredSeconds, Namespace: r.Provenance.Namespace,
		Target: "builtin", Attempts: r.Totals.Attempts, Completed: r.Totals.Cycles,
		Errors: errorCounts(r.Totals.Errors), Unfinished: r.Totals.Unfinished, Rate: r.Totals.Rate, Notes: r.Notes,
	}
	if !r.Config.BuiltinTarget {
		s.Target = r.Config.Target
	}
	if v := r.Verdict; v != nil {
		s.Verdict, s.Reasons, s.Thresholds = v.Status, v.Reasons, v.Thresholds
	}
	for _, sc := range r.Scenarios {
		ss := ScenarioSummary{Name: sc.Name, Attempts: sc.Attempts, Completed: sc.Cycles, Rate: sc.Rate,
			Errors: errorCounts(sc.Errors), Unfinished: sc.Unfinished, Phases: map[string]map[string]int64{}}
		for name, p := range sc.Phases {
			ss.Phases[name] = map[string]int64{"p50": p.P50, "p90": p.P90, "p99": p.P99, "p999": p.P999, "max": p.Max, "count": p.Count}
		}
		s.Scenarios = append(s.Scenarios, ss)
	}
	if len(r.Peaks) > 0 {
		s.Peaks = map[string]uint64{}
		for k, v := range r.Peaks {
			s.Peaks[k] = v.Total
		}
	}
	return s
}

func errorCounts(m map[string]results.ErrorCount) map[string]uint64 {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		out[k] = v.Count
	}
	return out
}

// WriteRunSummaryJSON prints NewRunSummary as indented JSON.
func WriteRunSummaryJSON(w io.Writer, r *results.Run, record string) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(NewRunSummary(r, record))
}
