package metrics

import (
	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/workload"
)

// LoopProvider returns the provider of a loop run: per mix entry the pool's
// live counts (client side, warm-up included) with the cumulative phase
// histograms of sink, the built-in target's counts when target is not nil,
// and what each side holds. Socket states and kernel counters are the
// caller's to add (Census.Fill, collector.ReadCounters). Everything it reads
// is an atomic or a copy of the sink's histograms.
func LoopProvider(mix workload.Mix, pool *workload.Pool, target *workload.Target, sink *collector.LatencySink) Provider {
	return func() Live {
		var l Live
		phases := sink.Totals()
		for i, e := range mix.Entries {
			name := e.Scenario.String()
			c := FromCounts(name, SideClient, pool.LiveCounts(i))
			if i < len(phases) {
				c.Phases = phases[i]
			}
			l.Scenarios = append(l.Scenarios, c)
			if target != nil {
				l.Scenarios = append(l.Scenarios, FromCounts(name, SideTarget, target.Counts(e.Scenario)))
			}
		}
		l.Held = map[string]uint64{SideClient: uint64(pool.Held())}
		if target != nil {
			l.Held[SideTarget] = uint64(target.Held())
		}
		return l
	}
}
