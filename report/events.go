package report

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/closeload/closeload/results"
)

// closingStates are the states a close goes through, in that order: the
// ones whose kernel-measured dwell the run summary, a comparison and the
// dwell plots show.
// FIN_WAIT2_ORPHAN and TIME_WAIT are timewait mini-sockets' lifetimes.
var closingStates = []string{"FIN_WAIT1", "FIN_WAIT2", results.StateOrphanFinWait2, "CLOSING", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT"}

// WriteKernelEvents prints the kernel-events block of the run summary: per
// scenario and side, p50/p99 time in each closing state that was measured,
// timewait hand-overs, and resets by direction, state and reason. Nothing
// is printed for nil events.
func WriteKernelEvents(w io.Writer, ev *results.KernelEvents) error {
	if ev == nil {
		return nil
	}
	groups := append([]results.EventGroup(nil), ev.Groups...)
	sort.SliceStable(groups, func(i, j int) bool {
		if groups[i].Scenario != groups[j].Scenario {
			return groups[i].Scenario < groups[j].Scenario
		}
		return groups[i].Side < groups[j].Side
	})
	fmt.Fprintf(w, "kernel events (%s):\n", ev.Source)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  scenario\tside\tstate\tconns\tp50\tp99\t")
	for _, g := range groups {
		for _, st := range closingStates {
			d, ok := g.Dwell[st]
			if !ok || d.Count == 0 {
				continue
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%s\t\n", scenarioLabel(g), g.Side, st, d.Count,
				formatNs(float64(d.P50)), formatNs(float64(d.P99)))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, g := range groups {
		var parts []string
		if n := results.CountTotal(g.TimeWaitHandovers); n > 0 {
			parts = append(parts, fmt.Sprintf("to TIME_WAIT %d (%s)", n, joinCounts(g.TimeWaitHandovers)))
		}
		if n := results.CountTotal(g.TimeWaitOpen); n > 0 {
			parts = append(parts, fmt.Sprintf("mini-sockets alive at the end %d (%s)", n, joinCounts(g.TimeWaitOpen)))
		}
		if n := results.CountTotal(g.TimeWaitKilled); n > 0 {
			parts = append(parts, fmt.Sprintf("mini-sockets ended before their timer %d (%s)", n, joinCounts(g.TimeWaitKilled)))
		}
		if n := results.CountTotal(g.ResetsSent); n > 0 {
			s := fmt.Sprintf("RST sent %d in %s", n, joinCounts(g.ResetsSent))
			if len(g.ResetReasons) > 0 {
				s += " because " + joinCounts(g.ResetReasons)
			}
			parts = append(parts, s)
		}
		if n := results.CountTotal(g.ResetsReceived); n > 0 {
			parts = append(parts, fmt.Sprintf("RST received %d in %s", n, joinCounts(g.ResetsReceived)))
		}
		if len(parts) > 0 {
			fmt.Fprintf(w, "  %s %s: %s\n", scenarioLabel(g), g.Side, strings.Join(parts, "; "))
		}
	}
	if m := ev.Methods["time_wait_lifetime"]; strings.HasPrefix(m, results.MethodNotMeasured) {
		fmt.Fprintf(w, "  TIME_WAIT lifetime %s\n", m)
	}
	if ev.Untracked > 0 {
		fmt.Fprintf(w, "  %d transitions without dwell (the kernel's per-connection table was full)\n", ev.Untracked)
	}
	if ev.Missed > 0 {
		fmt.Fprintf(w, "  %d events missed: the kernel skipped the tracer while another BPF program ran on the CPU; counts may be low by that much\n", ev.Missed)
	}
	return nil
}

func scenarioLabel(g results.EventGroup) string {
	if g.Scenario != "" {
		return g.Scenario
	}
	return fmt.Sprintf("port %d", g.Port)
}

// joinCounts prints "A 3, B 1", largest first, ties by name.
func joinCounts(m map[string]uint64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
