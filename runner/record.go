package runner

import (
	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/results"
	"github.com/closeload/closeload/workload"
)

// totalsOf sums a run's scenarios.
func totalsOf(scs []results.ScenarioResult, secs float64) results.Totals {
	var tot results.Totals
	for _, sr := range scs {
		tot.Cycles += sr.Cycles
		tot.Attempts += sr.Attempts
		tot.LateStarts += sr.LateStarts
		tot.Bytes.Sent += sr.Bytes.Sent
		tot.Bytes.Received += sr.Bytes.Received
		tot.Bytes.Verified += sr.Bytes.Verified
		for k, v := range sr.Unfinished {
			if tot.Unfinished == nil {
				tot.Unfinished = map[string]uint64{}
			}
			tot.Unfinished[k] += v
		}
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
	return tot
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
