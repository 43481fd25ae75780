package verify

import (
	"fmt"
	"sort"
	"strings"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/results"
)

// traceScenario labels a claim's sockets in the tracer's counts.
const traceScenario = "claim"

// kernelResets opens the eBPF close-event tracer on a server port, where the
// kernel permits it (root), and returns what adds its account of the resets
// to a result as evidence: which side sent and received RSTs, in which state
// and for which of the kernel's reasons. Without the tracer the evidence says
// why; the verdict never depends on it.
func kernelResets(port uint16) func(r *Result) {
	tr, err := collector.OpenTracer(collector.TracerConfig{Targets: []collector.TracerTarget{{Port: port, Scenario: traceScenario}}})
	if err != nil {
		return func(r *Result) { r.add("kernel events (eBPF)", "not counted here: %v", err) }
	}
	return func(r *Result) {
		defer tr.Close()
		ev, err := tr.Read()
		if err != nil {
			r.add("kernel events (eBPF)", "read failed: %v", err)
			return
		}
		var parts []string
		for _, side := range []string{results.SideClient, results.SideTarget} {
			g := ev.Group(traceScenario, side)
			name := map[string]string{results.SideClient: "client", results.SideTarget: "server"}[side]
			if g == nil {
				parts = append(parts, name+" side: no events")
				continue
			}
			sent, recv := results.CountTotal(g.ResetsSent), results.CountTotal(g.ResetsReceived)
			r.figure("ebpf_rst_sent_"+name, float64(sent))
			r.figure("ebpf_rst_received_"+name, float64(recv))
			parts = append(parts, fmt.Sprintf("%s side: RST sent %d%s%s, received %d%s", name, sent, inStates(g.ResetsSent), because(g.ResetReasons), recv, inStates(g.ResetsReceived)))
		}
		r.add("kernel events (eBPF)", "%s", strings.Join(parts, "; "))
	}
}

// inStates renders "in ESTABLISHED 10, LISTEN 1".
func inStates(m map[string]uint64) string {
	if len(m) == 0 {
		return ""
	}
	return " in " + counts(m)
}

// because renders " because TCP_ABORT_ON_CLOSE 10".
func because(m map[string]uint64) string {
	if len(m) == 0 {
		return ""
	}
	return " because " + counts(m)
}

func counts(m map[string]uint64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
