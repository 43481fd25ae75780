package report

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/closeload/closeload/results"
)

// WriteHlog writes the comparison's latency histograms as an HdrHistogram
// interval log (.hlog) that HistogramLogAnalyzer, HistogramLogProcessor and
// hdrhistogram-go's reader open: one interval per run (its shards merged),
// scenario and phase, spanning the run's measured window, tagged
// VARIANT/SCENARIO/PHASE. Summing a tag's intervals gives the variant's
// histogram merged over its repeats. Values are nanoseconds.
func (c *Comparison) WriteHlog(w io.Writer) error {
	type line struct {
		tag        string
		start, end time.Time
		h          *hdrhistogram.Histogram
	}
	var lines []line
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
					lines = append(lines, line{tag: slug(g.name) + "/" + slug(sc.Name) + "/" + slug(ph), start: start, end: end, h: h})
				}
			}
		}
	}
	sort.SliceStable(lines, func(a, b int) bool { return lines[a].start.Before(lines[b].start) })
	bw := bufio.NewWriter(w)
	lw := hdrhistogram.NewHistogramLogWriter(bw)
	baseMs := base.UnixMilli()
	lw.SetBaseTime(baseMs)
	if err := lw.OutputLogFormatVersion(); err != nil {
		return err
	}
	if err := lw.OutputComment("[closeload report: one interval per run, scenario and phase; Tag=VARIANT/SCENARIO/PHASE; values in ns]"); err != nil {
		return err
	}
	if err := lw.OutputStartTime(baseMs); err != nil {
		return err
	}
	if err := lw.OutputBaseTime(baseMs); err != nil {
		return err
	}
	if err := lw.OutputLegend(); err != nil {
		return err
	}
	for _, l := range lines {
		l.h.SetTag(l.tag)
		l.h.SetStartTimeMs(l.start.UnixMilli())
		l.h.SetEndTimeMs(l.end.UnixMilli())
		if err := lw.OutputIntervalHistogram(l.h); err != nil {
			return fmt.Errorf("hlog %s: %w", l.tag, err)
		}
	}
	return bw.Flush()
}
