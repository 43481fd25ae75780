package runner

import (
	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
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
		}
		if secs > 0 {
			sr.Rate = float64(c.Cycles) / secs
		}
		phases, err := phasesOf(hists[i])
		if err != nil {
			return err
		}
		sr.Phases = phases
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

// stopSampling stops the sampler, when it started, and returns what it saw.
func stopSampling(s *collector.Sampler, startErr error) collector.SamplerResult {
	if startErr != nil {
		return collector.SamplerResult{}
	}
	return s.Stop()
}

// applySampling puts the sampler's view into rec: the series, counter
// deltas, peaks and the collector's health, or why there is none.
func applySampling(rec *results.Run, sr collector.SamplerResult, startErr error) {
	if startErr != nil {
		rec.Series, rec.Counters, rec.Peaks = nil, nil, nil
		rec.Collector = &results.CollectorHealth{Errors: []string{startErr.Error()}}
		return
	}
	h := sr.Health
	rec.Series, rec.Counters, rec.Peaks, rec.Collector = sr.Series, sr.Counters, sr.Peaks, &h
}

// phasesOf summarizes one scenario's phase histograms for the record;
// phases the scenario never had are left out.
func phasesOf(hs [collector.NumPhases]*hdrhistogram.Histogram) (map[string]results.Phase, error) {
	out := map[string]results.Phase{}
	for p, h := range hs {
		if h.TotalCount() == 0 {
			continue
		}
		ph, err := results.Summarize(h)
		if err != nil {
			return nil, err
		}
		out[collector.PhaseNames[p]] = ph
	}
	return out, nil
}
