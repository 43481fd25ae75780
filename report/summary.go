package report

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/closeload/closeload/results"
)

// The run summary: what a user reads after `closeload run`, rendered from
// the record alone, so the same text comes out of a fresh run, a child's
// record and a record read back from disk.

// phaseOrder is the order phases are shown in.
var phaseOrder = []string{"connect", "first_byte", "drain", "total"}

// unfinishedOrder is the order unfinished phases are shown in.
var unfinishedOrder = []string{"connect", "first_byte", "drain", "held"}

// WriteRunSummary prints the whole summary of a run: where and how it ran,
// per scenario the latency of every phase, the counts that add up to the
// attempts (completed, errors, unfinished at the stop), what limited it,
// the storm's and the kernel's figures, the thresholds, and last the
// verdict.
func WriteRunSummary(w io.Writer, r *results.Run) {
	writeHeader(w, r)
	writePhases(w, r)
	writeCounts(w, r)
	writeLimits(w, r)
	WriteStormSummary(w, r)
	if r.Collector != nil {
		fmt.Fprintln(w)
		WriteKernelSummary(w, r)
	}
	if r.KernelEvents != nil {
		fmt.Fprintln(w)
		_ = WriteKernelEvents(w, r.KernelEvents)
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range r.Notes {
			fmt.Fprintf(w, "note: %s\n", n)
		}
	}
	WriteVerdict(w, r)
}

func writeHeader(w io.Writer, r *results.Run) {
	grace := ""
	if r.GraceSeconds > 0.05 {
		grace = fmt.Sprintf(" (then %.1fs of grace for connections in flight)", r.GraceSeconds)
	}
	fmt.Fprintf(w, "run %s  %.1fs measured%s\n", r.ID, r.MeasuredSeconds, grace)
	target := "built-in target"
	if !r.Config.BuiltinTarget {
		target = "target " + r.Config.Target
	}
	place := "in the host's network namespace"
	switch r.Provenance.Namespace {
	case "isolated", "isolated-userns":
		place = "in a fresh network namespace"
	}
	shape := fmt.Sprintf("closed loop, %d conns", r.Config.Conns)
	if r.Config.Shape == "open" {
		shape = fmt.Sprintf("open loop, %.0f/s %s, up to %d in flight", r.Config.Rate, r.Config.Arrival, r.Config.Conns)
	}
	if r.Config.Shape == "storm" {
		shape = stormShape(r.Config)
	}
	fmt.Fprintf(w, "%s %s; %s; sysctls %s\n\n", target, place, shape, r.Sysctls.Mode)
}

func writePhases(w io.Writer, r *results.Run) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tphase\tcount\tp50\tp99\tp99.9\tmax\t")
	for _, s := range r.Scenarios {
		first := true
		for _, name := range phaseOrder {
			p, ok := s.Phases[name]
			if !ok {
				continue
			}
			label := ""
			if first {
				label, first = s.Name, false
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t\n", label, name, p.Count, ns(p.P50), ns(p.P99), ns(p.P999), ns(p.Max))
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
}

func writeCounts(w io.Writer, r *results.Run) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tattempts\tcompleted\tcycles/s\terrors\tunfinished\teof\treset\tlate\t")
	for _, s := range r.Scenarios {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%d\t%d\t%d\t%d\t%d\t\n", s.Name, s.Attempts, s.Cycles, s.Rate, results.ErrorTotal(s.Errors), results.CountTotal(s.Unfinished), s.Observed.EOF, s.Observed.Reset, s.LateStarts)
	}
	t := r.Totals
	fmt.Fprintf(tw, "total\t%d\t%d\t%.0f\t%d\t%d\t\t\t%d\t\n", t.Attempts, t.Cycles, t.Rate, results.ErrorTotal(t.Errors), results.CountTotal(t.Unfinished), t.LateStarts)
	tw.Flush()
	if !t.Accounted() && r.Storm == nil {
		missing := int64(t.Attempts) - int64(t.Cycles+results.ErrorTotal(t.Errors)+results.CountTotal(t.Unfinished))
		fmt.Fprintf(w, "ACCOUNTING: %d connections are neither completed, failed nor unfinished\n", missing)
	}
	if len(t.Errors) > 0 {
		fmt.Fprintln(w, "\nerrors by class:")
		for _, k := range sortedKeys(t.Errors) {
			e := t.Errors[k]
			fmt.Fprintf(w, "  %-20s %8d  e.g. %s\n", k, e.Count, e.Example)
		}
	}
	if n := results.CountTotal(t.Unfinished); n > 0 {
		var parts []string
		for _, ph := range unfinishedOrder {
			if v := t.Unfinished[ph]; v > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", unfinishedName(ph), v))
			}
		}
		fmt.Fprintf(w, "\nunfinished at the stop: %d (%s)\n", n, strings.Join(parts, ", "))
	}
	var lost uint64
	for _, s := range r.Scenarios {
		lost += s.Observed.LostResponses
	}
	if lost > 0 {
		fmt.Fprintf(w, "\nresponses lost to a reset: %d\n", lost)
	}
	if t.Bytes.Verified > 0 {
		fmt.Fprintf(w, "\nbytes sent %d, received %d, verified %d\n", t.Bytes.Sent, t.Bytes.Received, t.Bytes.Verified)
	}
}

// unfinishedName says what an unfinished connection was waiting for.
func unfinishedName(phase string) string {
	switch phase {
	case "connect":
		return "connecting"
	case "first_byte":
		return "waiting for the first byte"
	case "drain":
		return "waiting for the peer's EOF"
	case "held":
		return "held"
	}
	return phase
}

// writeLimits names what held the run back: an open loop that missed its
// rate, the target's back-pressure (listen queue overflows, SYN_SENT
// piling up).
func writeLimits(w io.Writer, r *results.Run) {
	var lines []string
	c := r.Config
	if c.Shape == "open" && r.MeasuredSeconds > 0 && c.Rate > 0 {
		asked := c.Rate
		got := float64(r.Totals.Attempts) / r.MeasuredSeconds
		if got < 0.95*asked || r.Totals.LateStarts > r.Totals.Attempts/100 {
			why := fmt.Sprintf("all %d workers were busy", c.Conns)
			if p99 := phaseP99(r, "total"); p99 > 0 {
				why += fmt.Sprintf(": at a total p99 of %s, %d workers carry at most %.0f/s", ns(p99), c.Conns, float64(c.Conns)/(float64(p99)/1e9))
			}
			lines = append(lines, fmt.Sprintf("open loop asked %.0f/s and started %.0f/s (%.0f%%); %d of %d starts were late by more than 1ms (%s); raise the connections in flight, or the target is the limit",
				asked, got, 100*got/asked, r.Totals.LateStarts, r.Totals.Attempts, why))
		}
		if never := int64(asked*r.MeasuredSeconds) - int64(r.Totals.Attempts); never > int64(asked/10) {
			lines = append(lines, fmt.Sprintf("about %d scheduled starts never ran before the stop", never))
		}
	}
	deltas := map[string]int64{}
	for _, d := range r.Counters {
		deltas[d.Name] = d.Delta
	}
	if n := deltas["TcpExt.ListenOverflows"] + deltas["TcpExt.ListenDrops"]; n > 0 {
		lines = append(lines, fmt.Sprintf("back-pressure: the listen queue overflowed (ListenOverflows %d, ListenDrops %d): the target accepts slower than connections arrive", deltas["TcpExt.ListenOverflows"], deltas["TcpExt.ListenDrops"]))
	}
	if hw := r.Totals.TargetHoldWaits; hw != nil && hw.Count > 0 {
		lines = append(lines, fmt.Sprintf("back-pressure: the built-in target's holder was full %d times (waited %s in all): it holds as many connections as its descriptors allow, and new ones queued in SYN_SENT", hw.Count, ns(hw.WaitedNs)))
	}
	if hw := r.Totals.ClientHoldWaits; hw != nil && hw.Count > 0 {
		lines = append(lines, fmt.Sprintf("back-pressure: the client's holder was full %d times (waited %s in all): the descriptor limit paced the run", hw.Count, ns(hw.WaitedNs)))
	}
	for _, o := range r.Outages {
		end := "still refusing at the stop"
		if !o.End.IsZero() {
			end = fmt.Sprintf("until %s (%s)", o.End.Format("15:04:05.000"), ns(int64(o.End.Sub(o.Start))))
		}
		lines = append(lines, fmt.Sprintf("outage: the target refused %d connections from %s %s", o.Refused, o.Start.Format("15:04:05.000"), end))
	}
	if p := r.Peaks["SYN_SENT"].Total; p > 0 && c.Conns > 0 && p >= uint64(c.Conns)/2 {
		lines = append(lines, fmt.Sprintf("back-pressure: up to %d connections waited in SYN_SENT for the target to answer", p))
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintln(w)
	for _, l := range lines {
		fmt.Fprintf(w, "limit: %s\n", l)
	}
}

func phaseP99(r *results.Run, phase string) int64 {
	var m int64
	for _, s := range r.Scenarios {
		if p, ok := s.Phases[phase]; ok {
			m = max(m, p.P99)
		}
	}
	return m
}

// WriteVerdict prints the thresholds, each held or failed with what was
// measured, and the verdict line that ends every summary.
func WriteVerdict(w io.Writer, r *results.Run) {
	v := r.Verdict
	if v == nil {
		return
	}
	if len(v.Thresholds) > 0 {
		fmt.Fprintln(w, "\nthresholds:")
		for _, t := range v.Thresholds {
			state := "held  "
			if !t.Held {
				state = "FAILED"
			}
			measured := "not measured"
			if !t.Missing {
				measured = thresholdValue(t)
			}
			fmt.Fprintf(w, "  %s  %-32s measured %s\n", state, t.Expr, measured)
		}
	}
	fmt.Fprintln(w)
	switch v.Status {
	case results.VerdictOK:
		fmt.Fprintf(w, "verdict: ok: %d of %d connections completed%s\n", r.Totals.Cycles, r.Totals.Attempts, thresholdsHeld(v))
	case results.VerdictThreshold:
		var failed []string
		for _, t := range v.Thresholds {
			if !t.Held {
				failed = append(failed, t.Expr)
			}
		}
		fmt.Fprintf(w, "verdict: THRESHOLD FAILED: %s\n", strings.Join(failed, ", "))
	case results.VerdictInterrupted:
		fmt.Fprintf(w, "verdict: INTERRUPTED (%s): the figures cover the run until then\n", strings.Join(v.Reasons, "; "))
	default:
		fmt.Fprintf(w, "verdict: FAILED: %s\n", strings.Join(v.Reasons, "; "))
	}
}

func thresholdsHeld(v *results.Verdict) string {
	if len(v.Thresholds) == 0 {
		return ""
	}
	return fmt.Sprintf(", %d thresholds held", len(v.Thresholds))
}

func thresholdValue(t results.ThresholdResult) string {
	switch t.Unit {
	case "ns":
		return ns(int64(t.Value))
	case "ratio":
		return fmt.Sprintf("%.3g%%", 100*t.Value)
	case "1/s":
		return fmt.Sprintf("%.0f/s", t.Value)
	}
	return fmt.Sprintf("%.0f", t.Value)
}

// stormShape describes a storm for the summary's first lines.
func stormShape(c results.Config) string {
	s := fmt.Sprintf("storm of %d, closer %s, window %v", c.Storm, c.Closer, c.StormWindow)
	if c.Rate > 0 {
		s += fmt.Sprintf(", opened at %.0f/s", c.Rate)
	}
	if c.Procs > 1 {
		s += fmt.Sprintf(", %d processes", c.Procs)
	}
	return s
}

// WriteStormSummary prints a storm's own figures: what was opened and how
// every connection ended, the hold peak, drain and time to the last close.
func WriteStormSummary(w io.Writer, r *results.Run) {
	st := r.Storm
	if st == nil {
		return
	}
	verdict := "every connection accounted for"
	if st.Unaccounted > 0 {
		verdict = fmt.Sprintf("%d connections UNACCOUNTED", st.Unaccounted)
	}
	fmt.Fprintf(w, "\n%s: %s\n", stormShape(r.Config), verdict)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "opened\tclosed (EOF)\tfailed\tunaccounted\thold peak\tdrain p99\tto last close\t")
	drain := "-"
	for _, s := range r.Scenarios {
		if p, ok := s.Phases["drain"]; ok {
			drain = ns(p.P99)
		}
	}
	fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%s\t%s\t\n", st.Opened, st.Closed, st.Failed, st.Unaccounted, st.HoldPeak, drain, ns(st.TimeToLastClose))
	tw.Flush()
	if never := uint64(r.Config.Storm) - min(uint64(r.Config.Storm), st.Opened); never > 0 {
		fmt.Fprintf(w, "%d connections never opened (see errors)\n", never)
	}
	if c := r.Collector; c != nil && c.DroppedLatencies > 0 {
		fmt.Fprintf(w, "%d latencies over 60 s left out of the histograms (a storm's total phase spans the opening and the hold)\n", c.DroppedLatencies)
	}
}

// SummaryStates are the states the run summary shows peaks of.
var SummaryStates = []string{"TIME_WAIT", "FIN_WAIT2", "CLOSE_WAIT", "LAST_ACK"}

// SummaryCounters are the close-related counters the run summary shows the
// whole-run deltas of.
var SummaryCounters = []string{
	"TcpExt.TW", "TcpExt.TWKilled", "TcpExt.TWRecycled", "TcpExt.TCPTimeWaitOverflow",
	"TcpExt.TCPAbortOnClose", "TcpExt.TCPAbortOnData", "TcpExt.TCPAbortOnMemory", "TcpExt.TCPAbortOnTimeout",
	"TcpExt.ListenOverflows", "TcpExt.ListenDrops", "Tcp.OutRsts", "Tcp.EstabResets",
}

// WriteKernelSummary prints the kernel side of a run: peak socket states
// (per side when the record has them), the close counters' deltas and how
// well sampling went. A figure that could not be measured prints as "n/a",
// never as 0.
func WriteKernelSummary(w io.Writer, r *results.Run) {
	h := r.Collector
	if h == nil {
		return
	}
	src := h.Source
	switch src {
	case "netlink":
		src = "sock_diag"
	case "proc":
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
	fmt.Fprintf(w, "kernel: %s, %s, %d samples every %v, %d missed, %s per sample (max %s)\n",
		src, ports, h.Samples, time.Duration(h.IntervalNs), h.Missed, ns(h.MeanCostNs), ns(h.MaxCostNs))
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
		if r.Census != nil {
			if before := r.Census.Ports[name].Total; before > 0 {
				fmt.Fprintf(w, " (%d there before the run)", before)
			}
		}
	}
	fmt.Fprintln(w)
	for _, side := range []string{results.SideClient, results.SideTarget} {
		peaks, ok := r.PeakSides[side]
		if !ok || h.Source == "none" || h.Source == "" {
			continue
		}
		fmt.Fprintf(w, "    %s side:", side)
		for _, name := range SummaryStates {
			fmt.Fprintf(w, "  %s %d", name, peaks[name].Total)
		}
		fmt.Fprintln(w)
	}
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

// ns prints nanoseconds as latency tools do, three significant digits.
func ns(v int64) string { return formatNs(float64(v)) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
