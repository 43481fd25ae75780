package report

import (
	"fmt"
	"io"
	"time"

	"github.com/closeload/closeload/results"
)

// WriteHlog writes the comparison's latency histograms as an HdrHistogram
// interval log (.hlog) that HistogramLogAnalyzer, HistogramLogProcessor and
// hdrhistogram-go's reader open: per run (its shards merged), spanning its
// measured window, one untagged interval of the total phase merged over the
// run's scenarios (what the tools read without a tag) and one interval per
// scenario and phase tagged VARIANT/SCENARIO/PHASE. Summing a tag's
// intervals gives the variant's histogram merged over its repeats. Values
// are nanoseconds.
func (c *Comparison) WriteHlog(w io.Writer) error {
	var intervals []results.HlogInterval
	var base time.Time
	for _, g := range c.groups {
		for _, r := range g.runs {
			end := r.End
			start := end.Add(-time.Duration(r.MeasuredSeconds * float64(time.Second)))
			if r.MeasuredSeconds <= 0 || start.Before(r.Start) {
				start = r.Start
			}
			if base.IsZero() || start.Before(base) {
				base = start
			}
			untagged := results.NewHistogram()
			for _, sc := range r.Scenarios {
				for _, ph := range c.phasesOf(sc.Name) {
					if _, ok := sc.Phases[ph]; !ok {
						continue
					}
					h, err := results.DecodeHistogram(sc.Phases[ph].Histogram)
					if err != nil {
						return fmt.Errorf("run %s scenario %s phase %s: %w", r.ID, sc.Name, ph, err)
					}
					if h.TotalCount() == 0 {
						continue
					}
					if ph == untaggedPhase {
						untagged.Merge(h)
					}
					intervals = append(intervals, results.HlogInterval{Tag: slug(g.name) + "/" + slug(sc.Name) + "/" + slug(ph), Start: start, End: end, Histogram: h})
				}
			}
			if untagged.TotalCount() > 0 {
				intervals = append(intervals, results.HlogInterval{Start: start, End: end, Histogram: untagged})
			}
		}
	}
	return results.WriteHlog(w, base, "[closeload report: per run, untagged: the total phase over its scenarios; Tag=VARIANT/SCENARIO/PHASE; values in ns]", intervals)
}

// untaggedPhase is the phase written untagged: the whole connection.
const untaggedPhase = "total"
