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

// StormProvider returns the provider of a storm run: the client's and the
// built-in target's (when not nil) counts for the storm's scenario, the
// connections each side holds open now, and the sink's phase histograms.
func StormProvider(scenario workload.Scenario, storm *workload.Storm, target *workload.StormTarget, sink *collector.LatencySink) Provider {
	name := scenario.String()
	return func() Live {
		var l Live
		c := storm.Counts()
		cl := fromStorm(name, SideClient, &c)
		if phases := sink.Totals(); len(phases) > 0 {
			cl.Phases = phases[0]
		}
		l.Scenarios = append(l.Scenarios, cl)
		l.Held = map[string]uint64{SideClient: c.Held}
		if target != nil {
			tc := target.Counts()
			l.Scenarios = append(l.Scenarios, fromStorm(name, SideTarget, &tc))
			l.Held[SideTarget] = tc.Held
		}
		return l
	}
}

// fromStorm maps one storm side's counts: a connection is completed when it
// ended in the peer's EOF.
func fromStorm(scenario, side string, c *workload.StormSideCounts) ScenarioLive {
	s := ScenarioLive{
		Scenario: scenario, Side: side, Attempts: c.Attempts, Completed: c.Closed, Errors: c.Errors,
		BytesSent: c.Sent, BytesReceived: c.Received, LateStarts: c.LateStarts,
	}
	if ended := c.Closed + c.ErrorTotal(); c.Attempts > ended {
		s.InFlight = c.Attempts - ended
	}
	return s
}
