package results

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// ErrMerge marks records that cannot be merged into one run: different run
// ids, disagreeing shard counts, the same shard twice. Merging them anyway
// would double count or mix two experiments.
var ErrMerge = errors.New("cannot merge records")

// MissingShard names one shard of a sharded run for which no record was
// given, so a report can flag a run whose figures cover only part of the
// load instead of silently under-reporting it.
type MissingShard struct {
	RunID string `json:"run_id"`
	Index int    `json:"index"`
	Count int    `json:"count"`
}

// String is the note a report prints for the missing shard.
func (m MissingShard) String() string {
	return fmt.Sprintf("run %s: shard %d/%d missing", m.RunID, m.Index, m.Count)
}

// ShardSlice returns how much of a total (connections, storm size) shard i
// of n takes: floor((i+1)·total/n) − floor(i·total/n). The slices of all n
// shards add up to total exactly.
func ShardSlice(total, i, n int) int {
	if n <= 0 || i < 0 || i >= n {
		return 0
	}
	return int(int64(i+1)*int64(total)/int64(n) - int64(i)*int64(total)/int64(n))
}

// Merge combines the shard records of one run into the record of the whole
// run, exactly: histograms are merged bucket by bucket and re-summarized,
// counts are summed, series are aligned on wall clock and summed per
// interval, and kernel counters are summed without double counting the
// ones that shards on one host share. A shard record holds its own slice of
// the configuration (Conns, Rate, Storm, Cycles), so those are summed too.
//
// The returned MissingShard list names shards absent from runs; the merge
// still succeeds so that a report can show what there is, flagged. A single
// record without a Shard is returned as it is. Records of different run
// ids, with disagreeing shard counts, or with one shard given twice are an
// ErrMerge.
func Merge(runs []*Run) (*Run, []MissingShard, error) {
	if len(runs) == 0 {
		return nil, nil, fmt.Errorf("%w: no records", ErrMerge)
	}
	for _, r := range runs {
		if r == nil {
			return nil, nil, fmt.Errorf("%w: nil record", ErrMerge)
		}
	}
	if len(runs) == 1 && runs[0].Shard == nil {
		return runs[0], nil, nil
	}
	id := runs[0].ID
	count := 0
	seen := map[int]bool{}
	for _, r := range runs {
		if r.ID != id {
			return nil, nil, fmt.Errorf("%w: run ids %q and %q differ", ErrMerge, id, r.ID)
		}
		if r.Shard == nil {
			return nil, nil, fmt.Errorf("%w: run %s: a record without a shard index beside sharded ones", ErrMerge, id)
		}
		if count == 0 {
			count = r.Shard.Count
		}
		if r.Shard.Count != count || r.Shard.Count <= 0 {
			return nil, nil, fmt.Errorf("%w: run %s: shard counts %d and %d disagree", ErrMerge, id, count, r.Shard.Count)
		}
		if r.Shard.Index < 0 || r.Shard.Index >= count {
			return nil, nil, fmt.Errorf("%w: run %s: shard index %d out of 0..%d", ErrMerge, id, r.Shard.Index, count-1)
		}
		if seen[r.Shard.Index] {
			return nil, nil, fmt.Errorf("%w: run %s: shard %d/%d given twice", ErrMerge, id, r.Shard.Index, count)
		}
		seen[r.Shard.Index] = true
	}
	shards := append([]*Run(nil), runs...)
	sort.Slice(shards, func(a, b int) bool { return shards[a].Shard.Index < shards[b].Shard.Index })
	var missing []MissingShard
	for i := 0; i < count; i++ {
		if !seen[i] {
			missing = append(missing, MissingShard{RunID: id, Index: i, Count: count})
		}
	}
	out, err := mergeShards(shards)
	if err != nil {
		return nil, nil, err
	}
	return out, missing, nil
}

// mergeShards does the work of Merge on validated shards sorted by index.
func mergeShards(shards []*Run) (*Run, error) {
	first := shards[0]
	out := &Run{
		Schema:     first.Schema,
		ID:         first.ID,
		Matrix:     first.Matrix,
		Variant:    first.Variant,
		Repeat:     first.Repeat,
		Provenance: first.Provenance,
		Config:     first.Config,
		Sysctls:    first.Sysctls,
		Start:      first.Start,
		End:        first.End,
	}
	out.Provenance.Args = append([]string(nil), first.Provenance.Args...)
	out.Config.Mix = append([]MixEntry(nil), first.Config.Mix...)
	out.Config.Sources = nil
	hosts := []string{}
	hostSeen := map[string]bool{}
	var reasons []string
	out.Config.Conns, out.Config.Rate, out.Config.Storm, out.Config.Cycles = 0, 0, 0, 0
	for _, s := range shards {
		if !sameStrings(s.Sysctls.Applied, first.Sysctls.Applied) {
			return nil, fmt.Errorf("%w: run %s: shards %d and %d applied different sysctls", ErrMerge, first.ID, first.Shard.Index, s.Shard.Index)
		}
		if h := s.Provenance.Hostname; !hostSeen[h] {
			hostSeen[h] = true
			hosts = append(hosts, h)
		}
		if s.Start.Before(out.Start) {
			out.Start = s.Start
		}
		if s.End.After(out.End) {
			out.End = s.End
		}
		out.MeasuredSeconds = math.Max(out.MeasuredSeconds, s.MeasuredSeconds)
		if s.Interrupted {
			out.Interrupted = true
			r := s.InterruptReason
			if r == "" {
				r = "interrupted"
			}
			reasons = append(reasons, fmt.Sprintf("shard %d: %s", s.Shard.Index, r))
		}
		out.Config.Conns += s.Config.Conns
		out.Config.Rate += s.Config.Rate
		out.Config.Storm += s.Config.Storm
		out.Config.Cycles += s.Config.Cycles
		out.Config.Sources = appendNew(out.Config.Sources, s.Config.Sources...)
	}
	out.Provenance.Hostname = strings.Join(hosts, ",")
	out.InterruptReason = strings.Join(reasons, "; ")

	var err error
	if out.Scenarios, err = mergeScenarios(shards); err != nil {
		return nil, err
	}
	out.Totals = mergeTotals(shards)
	out.Counters = mergeCounters(shards)
	out.Series = mergeSeries(shards, out.Start)
	out.Peaks = mergePeaks(shards, out.Series)
	out.Collector = mergeCollector(shards)
	out.Storm = mergeStorm(shards)
	var evs []*KernelEvents
	for _, s := range shards {
		if s.KernelEvents != nil {
			evs = append(evs, s.KernelEvents)
		}
	}
	if len(evs) > 0 {
		if out.KernelEvents, err = MergeKernelEvents(evs...); err != nil {
			return nil, fmt.Errorf("%w: run %s: kernel events: %w", ErrMerge, first.ID, err)
		}
	}
	for _, s := range shards {
		out.Outages = append(out.Outages, s.Outages...)
	}
	slices.SortStableFunc(out.Outages, func(a, b Outage) int { return a.Start.Compare(b.Start) })
	for _, s := range shards {
		out.GraceSeconds = math.Max(out.GraceSeconds, s.GraceSeconds)
	}
	return out, nil
}

func sameStrings(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func appendNew(dst []string, src ...string) []string {
	for _, s := range src {
		dup := false
		for _, d := range dst {
			if d == s {
				dup = true
				break
			}
		}
		if !dup {
			dst = append(dst, s)
		}
	}
	return dst
}

// mergeScenarios sums scenarios by name, in the order they first appear.
func mergeScenarios(shards []*Run) ([]ScenarioResult, error) {
	var out []ScenarioResult
	index := map[string]int{}
	hists := map[string]map[string]*hdrhistogram.Histogram{}
	for _, s := range shards {
		for _, sc := range s.Scenarios {
			i, ok := index[sc.Name]
			if !ok {
				i = len(out)
				index[sc.Name] = i
				out = append(out, ScenarioResult{Name: sc.Name, Weight: sc.Weight})
				hists[sc.Name] = map[string]*hdrhistogram.Histogram{}
			}
			m := &out[i]
			m.Cycles += sc.Cycles
			m.Rate += sc.Rate
			m.Attempts += sc.Attempts
			m.Unfinished = AddUnfinished(m.Unfinished, sc.Unfinished)
			m.LateStarts += sc.LateStarts
			m.Errors = mergeErrors(m.Errors, sc.Errors)
			m.Bytes = addBytes(m.Bytes, sc.Bytes)
			m.Observed.EOF += sc.Observed.EOF
			m.Observed.Reset += sc.Observed.Reset
			m.Observed.LostResponses += sc.Observed.LostResponses
			if t := sc.Target; t != nil {
				if m.Target == nil {
					m.Target = &TargetSide{}
				}
				m.Target.Accepted += t.Accepted
				m.Target.Completed += t.Completed
				m.Target.Errors = mergeErrors(m.Target.Errors, t.Errors)
				m.Target.Unfinished = AddUnfinished(m.Target.Unfinished, t.Unfinished)
				m.Target.Bytes = addBytes(m.Target.Bytes, t.Bytes)
				m.Target.Observed.EOF += t.Observed.EOF
				m.Target.Observed.Reset += t.Observed.Reset
			}
			for phase, p := range sc.Phases {
				h, err := DecodeHistogram(p.Histogram)
				if err != nil {
					return nil, fmt.Errorf("%w: run %s shard %d scenario %s phase %s: %w", ErrMerge, s.ID, s.Shard.Index, sc.Name, phase, err)
				}
				acc := hists[sc.Name][phase]
				if acc == nil {
					acc = NewHistogram()
					hists[sc.Name][phase] = acc
				}
				if dropped := acc.Merge(h); dropped != 0 {
					return nil, fmt.Errorf("%w: run %s shard %d scenario %s phase %s: %d values out of range", ErrMerge, s.ID, s.Shard.Index, sc.Name, phase, dropped)
				}
			}
		}
	}
	for i := range out {
		m := &out[i]
		for phase, h := range hists[m.Name] {
			p, err := Summarize(h)
			if err != nil {
				return nil, err
			}
			if m.Phases == nil {
				m.Phases = map[string]Phase{}
			}
			m.Phases[phase] = p
		}
	}
	return out, nil
}

// mergeErrors adds src into dst, keeping the first example of each class.
func mergeErrors(dst, src map[string]ErrorCount) map[string]ErrorCount {
	if len(src) == 0 {
		return dst
	}
	if dst == nil {
		dst = map[string]ErrorCount{}
	}
	for class, e := range src {
		d := dst[class]
		d.Count += e.Count
		if d.Example == "" {
			d.Example = e.Example
		}
		dst[class] = d
	}
	return dst
}

func addBytes(a, b Bytes) Bytes {
	return Bytes{Sent: a.Sent + b.Sent, Received: a.Received + b.Received, Verified: a.Verified + b.Verified}
}

func mergeTotals(shards []*Run) Totals {
	var t Totals
	for _, s := range shards {
		t.Cycles += s.Totals.Cycles
		t.Attempts += s.Totals.Attempts
		t.Rate += s.Totals.Rate
		t.LateStarts += s.Totals.LateStarts
		t.Errors = mergeErrors(t.Errors, s.Totals.Errors)
		t.Bytes = addBytes(t.Bytes, s.Totals.Bytes)
		t.Unfinished = AddUnfinished(t.Unfinished, s.Totals.Unfinished)
		t.ClientHoldWaits = addHoldWaits(t.ClientHoldWaits, s.Totals.ClientHoldWaits)
		t.TargetHoldWaits = addHoldWaits(t.TargetHoldWaits, s.Totals.TargetHoldWaits)
	}
	return t
}

// AddUnfinished adds src into dst, phase by phase; nil stays nil when src
// is empty, so records without unfinished connections keep no map.
func AddUnfinished(dst, src map[string]uint64) map[string]uint64 {
	for phase, n := range src {
		if n == 0 {
			continue
		}
		if dst == nil {
			dst = map[string]uint64{}
		}
		dst[phase] += n
	}
	return dst
}

func addHoldWaits(a, b *HoldWaits) *HoldWaits {
	if b == nil {
		return a
	}
	if a == nil {
		a = &HoldWaits{}
	}
	a.Count += b.Count
	a.WaitedNs += b.WaitedNs
	return a
}

// counterDomain names the set of shards that read the same kernel counter:
// a global counter is one per host, a per-namespace counter is one per
// namespace, and shards that ran in the host's own namespace share it.
// Within a domain a counter is counted once; across domains it is summed.
func counterDomain(s *Run, scope string) string {
	host := s.Provenance.Hostname
	if scope == "global" {
		return "global@" + host
	}
	if s.Provenance.Namespace == "host" || s.Provenance.Namespace == "" && s.Sysctls.Mode == "host" {
		return "hostns@" + host
	}
	return fmt.Sprintf("shard%d@%s", s.Shard.Index, host)
}

// domainSum adds values per domain once: the largest reading within a
// domain stands for it (shards of one host see the same counter over
// nearly the same window), and domains are summed.
type domainSum map[string]int64

func (d domainSum) add(domain string, v int64) {
	if old, ok := d[domain]; !ok || v > old {
		d[domain] = v
	}
}

func (d domainSum) total() int64 {
	var t int64
	for _, v := range d {
		t += v
	}
	return t
}

func mergeCounters(shards []*Run) []CounterDelta {
	type acc struct {
		scope string
		sum   domainSum
	}
	var order []string
	byName := map[string]*acc{}
	for _, s := range shards {
		for _, c := range s.Counters {
			a := byName[c.Name]
			if a == nil {
				a = &acc{scope: c.Scope, sum: domainSum{}}
				byName[c.Name] = a
				order = append(order, c.Name)
			}
			a.sum.add(counterDomain(s, c.Scope), c.Delta)
		}
	}
	if len(order) == 0 {
		return nil
	}
	out := make([]CounterDelta, 0, len(order))
	for _, name := range order {
		a := byName[name]
		out = append(out, CounterDelta{Name: name, Delta: a.sum.total(), Scope: a.scope})
	}
	return out
}

// seriesInterval is the sampling interval of a shard: its configured one,
// else the smallest gap between its samples, else one second.
func seriesInterval(shards []*Run) time.Duration {
	for _, s := range shards {
		if s.Config.Interval > 0 {
			return s.Config.Interval
		}
	}
	var best time.Duration
	for _, s := range shards {
		for i := 1; i < len(s.Series); i++ {
			if d := s.Series[i].T.Sub(s.Series[i-1].T); d > 0 && (best == 0 || d < best) {
				best = d
			}
		}
	}
	if best == 0 {
		return time.Second
	}
	return best
}

// mergeSeries aligns the shards' samples on wall clock: a sample falls in
// the interval nearest to its time counted from base, and samples of one
// interval are summed (global counters once per host). Two samples of one
// shard can fall in one interval (the final, partial sample lands near the
// last tick): their deltas add up, while their levels (states, held) are
// the later sample's, so that a shard is never counted twice.
func mergeSeries(shards []*Run, base time.Time) []Sample {
	have := false
	for _, s := range shards {
		if len(s.Series) > 0 {
			have = true
		}
	}
	if !have {
		return nil
	}
	iv := seriesInterval(shards)
	type bucket struct {
		s        Sample
		counters map[string]domainSum
	}
	buckets := map[int64]*bucket{}
	for _, s := range shards {
		scope := map[string]string{}
		for _, c := range s.Counters {
			scope[c.Name] = c.Scope
		}
		own, keys := foldShardSeries(s, base, iv)
		for _, k := range keys {
			smp := own[k]
			b := buckets[k]
			if b == nil {
				at := base.Add(time.Duration(k) * iv)
				b = &bucket{s: Sample{T: at, Elapsed: at.Sub(base).Seconds()}}
				buckets[k] = b
			}
			b.s.Missing = appendNew(b.s.Missing, smp.Missing...)
			b.s.Cycles += smp.Cycles
			b.s.Errors += smp.Errors
			b.s.Attempts += smp.Attempts
			b.s.Held += smp.Held
			for name, c := range smp.States {
				if b.s.States == nil {
					b.s.States = map[string]StateCount{}
				}
				old := b.s.States[name]
				b.s.States[name] = StateCount{Total: old.Total + c.Total, Orphaned: old.Orphaned + c.Orphaned}
			}
			for name, v := range smp.Counters {
				if b.counters == nil {
					b.counters = map[string]domainSum{}
				}
				d := b.counters[name]
				if d == nil {
					d = domainSum{}
					b.counters[name] = d
				}
				d.add(counterDomain(s, scope[name]), v)
			}
		}
	}
	keys := make([]int64, 0, len(buckets))
	for k := range buckets {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(a, b int) bool { return keys[a] < keys[b] })
	out := make([]Sample, 0, len(keys))
	for _, k := range keys {
		b := buckets[k]
		if len(b.counters) > 0 {
			b.s.Counters = make(map[string]int64, len(b.counters))
			for name, d := range b.counters {
				b.s.Counters[name] = d.total()
			}
		}
		out = append(out, b.s)
	}
	return out
}

// foldShardSeries puts one shard's samples in the intervals of base and iv,
// one sample per interval, and returns them with their interval numbers in
// order. Samples sharing an interval add their deltas (cycles, errors,
// attempts, counters); levels (states, held) are the latest sample's that
// has them, and only what every one of them lacks stays missing.
func foldShardSeries(s *Run, base time.Time, iv time.Duration) (map[int64]*Sample, []int64) {
	out := map[int64]*Sample{}
	var keys []int64
	for _, smp := range s.Series {
		t := smp.T
		if t.IsZero() {
			t = s.Start.Add(time.Duration(smp.Elapsed * float64(time.Second)))
		}
		k := int64(math.Round(float64(t.Sub(base)) / float64(iv)))
		f := out[k]
		if f == nil {
			c := smp
			out[k] = &c
			keys = append(keys, k)
			continue
		}
		f.Cycles += smp.Cycles
		f.Errors += smp.Errors
		f.Attempts += smp.Attempts
		f.Held = smp.Held
		if !slices.Contains(smp.Missing, "states") {
			f.States = smp.States
		}
		if len(smp.Counters) > 0 {
			sum := make(map[string]int64, len(f.Counters)+len(smp.Counters))
			for name, v := range f.Counters {
				sum[name] = v
			}
			for name, v := range smp.Counters {
				sum[name] += v
			}
			f.Counters = sum
		}
		var missing []string
		for _, m := range f.Missing {
			if slices.Contains(smp.Missing, m) {
				missing = append(missing, m)
			}
		}
		f.Missing = missing
	}
	slices.Sort(keys)
	return out, keys
}

// mergePeaks recomputes peaks from the merged series when every shard has
// one (the peak of a sum is not the sum of peaks); otherwise it sums the
// shards' peaks, an upper bound.
func mergePeaks(shards []*Run, series []Sample) map[string]StateCount {
	all := true
	for _, s := range shards {
		if len(s.Series) == 0 {
			all = false
		}
	}
	peaks := map[string]StateCount{}
	if all && len(series) > 0 {
		for _, smp := range series {
			if slices.Contains(smp.Missing, "states") {
				continue // some shard did not count states then: a partial sum
			}
			for name, c := range smp.States {
				p := peaks[name]
				if c.Total > p.Total {
					p.Total = c.Total
				}
				if c.Orphaned > p.Orphaned {
					p.Orphaned = c.Orphaned
				}
				peaks[name] = p
			}
		}
	} else {
		for _, s := range shards {
			for name, c := range s.Peaks {
				p := peaks[name]
				peaks[name] = StateCount{Total: p.Total + c.Total, Orphaned: p.Orphaned + c.Orphaned}
			}
		}
	}
	if len(peaks) == 0 {
		return nil
	}
	return peaks
}

func mergeCollector(shards []*Run) *CollectorHealth {
	var out *CollectorHealth
	var costSum float64
	for _, s := range shards {
		c := s.Collector
		if c == nil {
			continue
		}
		if out == nil {
			out = &CollectorHealth{}
		}
		if !strings.Contains(","+out.Source+",", ","+c.Source+",") {
			if out.Source != "" {
				out.Source += ","
			}
			out.Source += c.Source
		}
		out.Samples += c.Samples
		out.Missed += c.Missed
		costSum += float64(c.MeanCostNs) * float64(c.Samples)
		if c.MaxCostNs > out.MaxCostNs {
			out.MaxCostNs = c.MaxCostNs
		}
		for _, e := range c.Errors {
			out.Errors = append(out.Errors, fmt.Sprintf("shard %d: %s", s.Shard.Index, e))
		}
		out.ParseErrors += c.ParseErrors
		out.DroppedLatencies += c.DroppedLatencies
		if out.FallbackReason == "" {
			out.FallbackReason = c.FallbackReason
		}
		if out.IntervalNs == 0 {
			out.IntervalNs = c.IntervalNs
		}
		for _, p := range c.Ports {
			if !slices.Contains(out.Ports, p) {
				out.Ports = append(out.Ports, p)
			}
		}
		out.Throttled += c.Throttled
		if out.CPUBudget == 0 {
			out.CPUBudget = c.CPUBudget
		}
		out.DumpRetries += c.DumpRetries
	}
	if out != nil && out.Samples > 0 {
		out.MeanCostNs = int64(math.Round(costSum / float64(out.Samples)))
	}
	return out
}

// mergeStorm sums the storm counts; the hold peak is summed too (shards
// hold at the same time, sharing --start-at) and the time to the last close
// is the latest shard's.
func mergeStorm(shards []*Run) *StormResult {
	var out *StormResult
	for _, s := range shards {
		st := s.Storm
		if st == nil {
			continue
		}
		if out == nil {
			out = &StormResult{}
		}
		out.Opened += st.Opened
		out.Closed += st.Closed
		out.Failed += st.Failed
		out.Unaccounted += st.Unaccounted
		out.Unfinished = AddUnfinished(out.Unfinished, st.Unfinished)
		out.HoldPeak += st.HoldPeak
		if st.TimeToLastClose > out.TimeToLastClose {
			out.TimeToLastClose = st.TimeToLastClose
		}
	}
	return out
}
