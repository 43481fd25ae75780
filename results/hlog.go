package results

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// ErrHlogTag marks an interval tag the HdrHistogram log format cannot carry
// (a comma, space or line break would split the line).
var ErrHlogTag = errors.New("bad hlog tag")

// HlogInterval is one interval histogram of an HdrHistogram interval log.
// An empty Tag is the untagged histogram that HdrHistogram's tools read when
// no tag is asked for (HistogramLogProcessor without -tag); a log without any
// untagged interval is unreadable to them.
type HlogInterval struct {
	Tag        string
	Start, End time.Time
	Histogram  *hdrhistogram.Histogram
}

// WriteHlog writes an HdrHistogram interval log (.hlog) that the Java
// HistogramLogProcessor and HistogramLogAnalyzer and hdrhistogram-go's
// reader open. StartTime and BaseTime carry milliseconds (the library's own
// writer rounds them to whole seconds, which shifts every interval); the
// intervals are written in start order, an untagged one before the tagged
// ones of the same start. comment, if set, is one line at the top. Values
// are whatever the histograms hold (nanoseconds in closeload); the maximum
// column is in milliseconds, as the tools expect.
func WriteHlog(w io.Writer, start time.Time, comment string, intervals []HlogInterval) error {
	for _, iv := range intervals {
		if strings.ContainsAny(iv.Tag, ", \r\n") {
			return fmt.Errorf("%w %q: no commas, spaces or line breaks", ErrHlogTag, iv.Tag)
		}
	}
	sorted := make([]HlogInterval, len(intervals))
	copy(sorted, intervals)
	sort.SliceStable(sorted, func(a, b int) bool {
		if !sorted[a].Start.Equal(sorted[b].Start) {
			return sorted[a].Start.Before(sorted[b].Start)
		}
		return sorted[a].Tag == "" && sorted[b].Tag != ""
	})
	bw := bufio.NewWriter(w)
	lw := hdrhistogram.NewHistogramLogWriter(bw)
	if err := lw.OutputLogFormatVersion(); err != nil {
		return err
	}
	if comment != "" {
		if err := lw.OutputComment(strings.ReplaceAll(comment, "\n", " ")); err != nil {
			return err
		}
	}
	ms := start.UnixMilli()
	secs := fmt.Sprintf("%d.%03d", ms/1000, ms%1000)
	fmt.Fprintf(bw, "#[StartTime: %s (seconds since epoch), %s]\n", secs, start.UTC().Format("2006-01-02T15:04:05.000Z07:00"))
	fmt.Fprintf(bw, "#[BaseTime: %s (seconds since epoch)]\n", secs)
	lw.SetBaseTime(ms)
	if err := lw.OutputLegend(); err != nil {
		return err
	}
	for _, iv := range sorted {
		if iv.Histogram == nil {
			continue
		}
		// The tag lives in the histogram; set it just before writing so one
		// histogram can appear under several tags.
		iv.Histogram.SetTag(iv.Tag)
		iv.Histogram.SetStartTimeMs(iv.Start.UnixMilli())
		iv.Histogram.SetEndTimeMs(iv.End.UnixMilli())
		if err := lw.OutputIntervalHistogram(iv.Histogram); err != nil {
			return fmt.Errorf("hlog interval %q: %w", iv.Tag, err)
		}
	}
	return bw.Flush()
}
