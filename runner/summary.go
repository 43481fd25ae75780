package runner

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/results"
)

// WriteSummary prints the table a user reads after a run: per scenario the
// cycles, the rate, the latency percentiles of every phase and the errors
// by class with one example each.
func WriteSummary(w io.Writer, r *results.Run) {
	state := "complete"
	if r.Interrupted {
		state = "INTERRUPTED: " + r.InterruptReason
	}
	fmt.Fprintf(w, "run %s  %.1fs measured  %s\n", r.ID, r.MeasuredSeconds, state)
	target := "built-in target"
	if !r.Config.BuiltinTarget {
		target = "target " + r.Config.Target
	}
	shape := fmt.Sprintf("closed loop, %d conns", r.Config.Conns)
	if r.Config.Shape == "open" {
		shape = fmt.Sprintf("open loop, %.0f/s %s, up to %d in flight", r.Config.Rate, r.Config.Arrival, r.Config.Conns)
	}
	if r.Config.Shape == "storm" {
		shape = stormShape(r.Config)
	}
	fmt.Fprintf(w, "%s; %s; sysctls %s\n\n", target, shape, r.Sysctls.Mode)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tphase\tcount\tp50\tp99\tp99.9\tmax\t")
	for _, s := range r.Scenarios {
		first := true
		for _, name := range collector.PhaseNames {
			p, ok := s.Phases[name]
			if !ok {
				continue
			}
			label := ""
			if first {
				label = s.Name
				first = false
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t\n", label, name, p.Count, dur(p.P50), dur(p.P99), dur(p.P999), dur(p.Max))
		}
	}
	tw.Flush()
	fmt.Fprintln(w)

	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tcycles\tcycles/s\terrors\teof\treset\tlate\t")
	for _, s := range r.Scenarios {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%d\t%d\t%d\t%d\t\n", s.Name, s.Cycles, s.Rate, errTotal(s.Errors), s.Observed.EOF, s.Observed.Reset, s.LateStarts)
	}
	fmt.Fprintf(tw, "total\t%d\t%.0f\t%d\t\t\t%d\t\n", r.Totals.Cycles, r.Totals.Rate, errTotal(r.Totals.Errors), r.Totals.LateStarts)
	tw.Flush()

	if len(r.Totals.Errors) > 0 {
		fmt.Fprintln(w, "\nerrors by class:")
		for _, k := range sortedKeys(r.Totals.Errors) {
			e := r.Totals.Errors[k]
			fmt.Fprintf(w, "  %-20s %8d  e.g. %s\n", k, e.Count, e.Example)
		}
	}
	var lost uint64
	for _, s := range r.Scenarios {
		lost += s.Observed.LostResponses
	}
	if lost > 0 {
		fmt.Fprintf(w, "\nresponses lost to a reset: %d\n", lost)
	}
	if r.Totals.Bytes.Verified > 0 {
		fmt.Fprintf(w, "\nbytes sent %d, received %d, verified %d\n", r.Totals.Bytes.Sent, r.Totals.Bytes.Received, r.Totals.Bytes.Verified)
	}
}

func errTotal(m map[string]results.ErrorCount) uint64 {
	var n uint64
	for _, e := range m {
		n += e.Count
	}
	return n
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// dur prints nanoseconds the way latency tools do: 3 significant digits.
func dur(ns int64) string {
	d := time.Duration(ns)
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", ns)
	case d < time.Millisecond:
		return fmt.Sprintf("%.3gµs", float64(ns)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.3gms", float64(ns)/1e6)
	}
	return fmt.Sprintf("%.3gs", d.Seconds())
}
