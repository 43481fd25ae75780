package runner

import (
	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/results"
	"github.com/closeload/closeload/workload"
)

// fillScenarios turns the pool's counters, the target's counters and the
// merged histograms into the record's per-scenario results and totals.
func fillScenarios(rec *results.Run, plan *Plan, pool *workload.Pool, target *workload.Target, sink *collector.LatencySink) error {
	start, end := pool.Window()
	secs := end.Sub(start).Seconds()
	rec.MeasuredSeconds = secs
	hists := sink.Totals()
	tot := &rec.Totals
	for i, e := range plan.Mix.Entries {
		c := pool.Counts(i)
		sr := results.ScenarioResult{
			Name: e.Scenario.String(), Weight: e.Weight,
			Cycles: c.Cycles, Attempts: c.Attempts, LateStarts: c.LateStarts,
			Errors:   errorsOf(c, func(k workload.ErrorClass) string { return pool.Example(i, k) }),
			Bytes:    results.Bytes{Sent: c.Sent, Received: c.Received, Verified: c.Verified},
			Observed: results.Observed{EOF: c.EOF, Reset: c.Reset, LostResponses: c.Lost},
			Phases:   map[string]results.Phase{},
		}
		if secs > 0 {
			sr.Rate = float64(c.Cycles) / secs
		}
		for p := range collector.NumPhases {
			h := hists[i][p]
			if h.TotalCount() == 0 {
				continue
			}
			ph, err := results.Summarize(h)
			if err != nil {
				return err
			}
			sr.Phases[collector.PhaseNames[p]] = ph
		}
		if target != nil {
			tc := target.Counts(e.Scenario)
			sr.Target = &results.TargetSide{
				Accepted: tc.Attempts, Completed: tc.Cycles,
				Errors:   errorsOf(tc, func(k workload.ErrorClass) string { return target.Example(e.Scenario, k) }),
				Bytes:    results.Bytes{Sent: tc.Sent, Received: tc.Received},
				Observed: results.Observed{EOF: tc.EOF, Reset: tc.Reset},
			}
		}
		rec.Scenarios = append(rec.Scenarios, sr)
		tot.Cycles += sr.Cycles
		tot.Attempts += sr.Attempts
		tot.LateStarts += sr.LateStarts
		tot.Bytes.Sent += sr.Bytes.Sent
		tot.Bytes.Received += sr.Bytes.Received
		tot.Bytes.Verified += sr.Bytes.Verified
		for k, v := range sr.Errors {
			if tot.Errors == nil {
				tot.Errors = map[string]results.ErrorCount{}
			}
			t := tot.Errors[k]
			t.Count += v.Count
			if t.Example == "" {
				t.Example = v.Example
			}
			tot.Errors[k] = t
		}
	}
	if secs > 0 {
		tot.Rate = float64(tot.Cycles) / secs
	}
	return nil
}

func errorsOf(c workload.Counts, example func(workload.ErrorClass) string) map[string]results.ErrorCount {
	var m map[string]results.ErrorCount
	for k, n := range c.Errors {
		if n == 0 {
			continue
		}
		if m == nil {
			m = map[string]results.ErrorCount{}
		}
		cl := workload.ErrorClass(k)
		m[cl.String()] = results.ErrorCount{Count: n, Example: example(cl)}
	}
	return m
}
