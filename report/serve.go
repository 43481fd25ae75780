package report

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/closeload/closeload/results"
)

// ServeScenario is what `closeload serve` served of one scenario.
type ServeScenario struct {
	Scenario   string            `json:"scenario"`
	Listen     string            `json:"listen"`
	Accepted   uint64            `json:"accepted"`
	Completed  uint64            `json:"completed"`
	Errors     map[string]uint64 `json:"errors,omitempty"`
	Unfinished map[string]uint64 `json:"unfinished,omitempty"`
	ResetsSeen uint64            `json:"resets_seen"`
}

// WriteServeSummary prints what serve served, a line per scenario.
func WriteServeSummary(w io.Writer, ss []ServeScenario) {
	for _, s := range ss {
		fmt.Fprintf(w, "%s: accepted %d, completed %d, errors %d, unfinished %d, resets seen %d\n",
			s.Scenario, s.Accepted, s.Completed, results.CountTotal(s.Errors), results.CountTotal(s.Unfinished), s.ResetsSeen)
	}
}

// WriteServeSummaryJSON prints it as one JSON object.
func WriteServeSummaryJSON(w io.Writer, ss []ServeScenario) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(struct {
		Scenarios []ServeScenario `json:"scenarios"`
	}{ss})
}
