package collector

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/closeload/closeload/results"
)

// SummaryStates are the states the run summary shows peaks of.
var SummaryStates = []string{"TIME_WAIT", "FIN_WAIT2", "CLOSE_WAIT", "LAST_ACK"}

// SummaryCounters are the close-related counters the run summary shows the
// whole-run deltas of (DESIGN: kernel facts).
var SummaryCounters = []string{
	"TcpExt.TW", "TcpExt.TWKilled", "TcpExt.TWRecycled", "TcpExt.TCPTimeWaitOverflow",
	"TcpExt.TCPAbortOnClose", "TcpExt.TCPAbortOnData", "TcpExt.TCPAbortOnMemory", "TcpExt.TCPAbortOnTimeout",
	"TcpExt.ListenOverflows", "TcpExt.ListenDrops", "Tcp.OutRsts", "Tcp.EstabResets",
}

// WriteSummary prints the kernel side of a run: peak socket states, the
// close counters' deltas and how well sampling went. A figure that could not
// be measured prints as "n/a", never as 0.
func WriteSummary(w io.Writer, r SamplerResult) {
	h := r.Health
	src := h.Source
	switch src {
	case SourceNetlink:
		src = "sock_diag"
	case SourceProc:
		src = "/proc/net/tcp"
	}
	ports := "all TCP sockets"
	if len(h.Ports) > 0 {
		ps := make([]string, len(h.Ports))
		for i, p := range h.Ports {
			ps[i] = fmt.Sprint(p)
		}
		ports = "ports " + strings.Join(ps, ",")
	}
	if h.Samples == 0 {
		fmt.Fprintf(w, "kernel: not sampled\n")
		for _, e := range h.Errors {
			fmt.Fprintf(w, "  error: %s\n", e)
		}
		return
	}
	fmt.Fprintf(w, "kernel: %s, %s, %d samples every %v, %d missed, %v per sample (max %v)\n",
		src, ports, h.Samples, time.Duration(h.IntervalNs), h.Missed,
		roundCost(h.MeanCostNs), roundCost(h.MaxCostNs))
	if h.Throttled > 0 {
		fmt.Fprintf(w, "  note: %d samples skipped their state count to keep within %.0f%% of a core\n", h.Throttled, 100*h.CPUBudget)
	}
	if h.FallbackReason != "" {
		fmt.Fprintf(w, "  note: %s\n", h.FallbackReason)
	}
	for _, n := range h.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	fmt.Fprintf(w, "  peak sockets:")
	for _, name := range SummaryStates {
		if h.Source == "none" || h.Source == "" {
			fmt.Fprintf(w, "  %s n/a", name)
			continue
		}
		c := r.Peaks[name]
		fmt.Fprintf(w, "  %s %d", name, c.Total)
		if name == "FIN_WAIT2" {
			fmt.Fprintf(w, " (orphaned %d, owned %d)", c.Orphaned, c.Total-min(c.Total, c.Orphaned))
		}
	}
	fmt.Fprintln(w)
	deltas := make(map[string]results.CounterDelta, len(r.Counters))
	for _, d := range r.Counters {
		deltas[d.Name] = d
	}
	fmt.Fprintf(w, "  counters over the run (per netns):")
	for i, name := range SummaryCounters {
		if i%4 == 0 {
			fmt.Fprintf(w, "\n   ")
		}
		short := name[strings.IndexByte(name, '.')+1:]
		if d, ok := deltas[name]; ok {
			fmt.Fprintf(w, " %s %d", short, d.Delta)
		} else {
			fmt.Fprintf(w, " %s n/a", short)
		}
	}
	fmt.Fprintln(w)
	if h.ParseErrors > 0 {
		fmt.Fprintf(w, "  parse errors: %d malformed lines\n", h.ParseErrors)
	}
	for _, e := range h.Errors {
		fmt.Fprintf(w, "  error: %s\n", e)
	}
}

// roundCost prints a cost to 3 significant figures.
func roundCost(ns int64) time.Duration {
	d := time.Duration(ns)
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}
