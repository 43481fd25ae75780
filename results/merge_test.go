package results

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

var mergeT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// shardData is what one shard measured, kept raw so that a test can build
// the record of the whole run from the same values.
type shardData struct {
	connect, total []int64
	cycles         uint64
	refused        uint64
	series         []Sample
}

func makeShardData(seed uint64, n int, offset time.Duration) shardData {
	rng := rand.New(rand.NewPCG(seed, 7))
	d := shardData{cycles: uint64(n), refused: seed + 1}
	for range n {
		c := int64(20_000 + rng.ExpFloat64()*30_000)
		d.connect = append(d.connect, c)
		d.total = append(d.total, c+int64(50_000+rng.ExpFloat64()*200_000))
	}
	for i := range 5 {
		d.series = append(d.series, Sample{
			T:        mergeT0.Add(time.Duration(i+1)*time.Second + offset),
			Elapsed:  float64(i+1) + offset.Seconds(),
			States:   map[string]StateCount{"TIME_WAIT": {Total: uint64(1000 * (i + 1) * int(seed+1))}, "FIN_WAIT2": {Total: uint64(i), Orphaned: uint64(i)}},
			Counters: map[string]int64{"TcpExt.TW": int64(100 * (seed + 1)), "TcpExt.TCPAbortOnClose": 5},
			Cycles:   uint64(n / 5),
		})
	}
	return d
}

func histOf(t testing.TB, vals ...[]int64) Phase {
	t.Helper()
	h := NewHistogram()
	for _, vs := range vals {
		for _, v := range vs {
			if err := h.RecordValue(v); err != nil {
				t.Fatal(err)
			}
		}
	}
	p, err := Summarize(h)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// recordOf builds a record from the data of some shards; with one shard it
// is that shard's record, with all of them the record of the whole run.
func recordOf(t testing.TB, shard *Shard, host, ns string, ds ...shardData) *Run {
	t.Helper()
	var connect, total [][]int64
	var cycles, refused uint64
	for _, d := range ds {
		connect = append(connect, d.connect)
		total = append(total, d.total)
		cycles += d.cycles
		refused += d.refused
	}
	r := &Run{
		Schema: SchemaVersion, ID: "run-1", Shard: shard,
		Provenance: Provenance{Hostname: host, Namespace: ns},
		Config:     Config{Shape: "closed", Conns: 10 * len(ds), Interval: time.Second, Mix: []MixEntry{{Scenario: "client-halfclose", Weight: 100}}},
		Sysctls:    Sysctls{Applied: map[string]string{"net.ipv4.tcp_tw_reuse": "1"}, Mode: "isolated"},
		Start:      mergeT0, End: mergeT0.Add(5 * time.Second), MeasuredSeconds: 5,
		Scenarios: []ScenarioResult{{
			Name: "client-halfclose", Weight: 100, Cycles: cycles, Attempts: cycles + refused, Rate: float64(cycles) / 5,
			Errors: map[string]ErrorCount{"refused": {Count: refused, Example: "connect: connection refused"}},
			Phases: map[string]Phase{"connect": histOf(t, connect...), "total": histOf(t, total...)},
		}},
		Totals: Totals{Cycles: cycles, Attempts: cycles + refused, Rate: float64(cycles) / 5,
			Errors: map[string]ErrorCount{"refused": {Count: refused, Example: "connect: connection refused"}}},
		Counters: []CounterDelta{
			{Name: "TcpExt.TW", Delta: 500, Scope: "netns"},
			{Name: "Sockstat.orphan", Delta: 7, Scope: "global"},
		},
		Storm: &StormResult{Opened: cycles, Closed: cycles, HoldPeak: cycles, TimeToLastClose: int64(len(ds))},
	}
	for _, d := range ds {
		r.Series = appendSeries(r.Series, d.series)
	}
	return r
}

func appendSeries(dst, src []Sample) []Sample {
	if dst == nil {
		out := make([]Sample, len(src))
		for i, s := range src {
			out[i] = s
			out[i].States = map[string]StateCount{}
			for k, v := range s.States {
				out[i].States[k] = v
			}
			out[i].Counters = map[string]int64{}
			for k, v := range s.Counters {
				out[i].Counters[k] = v
			}
		}
		return out
	}
	for i := range dst {
		for k, v := range src[i].States {
			o := dst[i].States[k]
			dst[i].States[k] = StateCount{Total: o.Total + v.Total, Orphaned: o.Orphaned + v.Orphaned}
		}
		for k, v := range src[i].Counters {
			dst[i].Counters[k] += v
		}
		dst[i].Cycles += src[i].Cycles
	}
	return dst
}

func TestMergeEqualsWhole(t *testing.T) {
	d0, d1 := makeShardData(0, 3000, 0), makeShardData(1, 2000, 40*time.Millisecond)
	s0 := recordOf(t, &Shard{Index: 0, Count: 2}, "a", "isolated", d0)
	s1 := recordOf(t, &Shard{Index: 1, Count: 2}, "b", "isolated", d1)
	whole := recordOf(t, nil, "a", "isolated", d0, d1)

	for _, order := range [][]*Run{{s0, s1}, {s1, s0}} {
		got, missing, err := Merge(order)
		if err != nil {
			t.Fatal(err)
		}
		if len(missing) != 0 {
			t.Fatalf("missing = %v, want none", missing)
		}
		gs, ws := got.Scenarios[0], whole.Scenarios[0]
		if gs.Cycles != ws.Cycles || gs.Attempts != ws.Attempts || gs.Errors["refused"] != ws.Errors["refused"] {
			t.Errorf("scenario counts: got %d/%d/%v, want %d/%d/%v", gs.Cycles, gs.Attempts, gs.Errors, ws.Cycles, ws.Attempts, ws.Errors)
		}
		for _, phase := range []string{"connect", "total"} {
			g, w := gs.Phases[phase], ws.Phases[phase]
			g.Histogram, w.Histogram = "", ""
			if g != w {
				t.Errorf("phase %s: merged %+v, whole %+v", phase, g, w)
			}
			gh, _ := DecodeHistogram(gs.Phases[phase].Histogram)
			wh, _ := DecodeHistogram(ws.Phases[phase].Histogram)
			if !gh.Equals(wh) {
				t.Errorf("phase %s: merged histogram differs from the whole's", phase)
			}
		}
		if got.Totals.Cycles != whole.Totals.Cycles || got.Totals.Rate != whole.Totals.Rate {
			t.Errorf("totals: got %+v, want %+v", got.Totals, whole.Totals)
		}
		if got.Config.Conns != whole.Config.Conns {
			t.Errorf("conns: got %d, want %d", got.Config.Conns, whole.Config.Conns)
		}
		if len(got.Series) != len(whole.Series) {
			t.Fatalf("series: got %d samples, want %d", len(got.Series), len(whole.Series))
		}
		for i := range got.Series {
			g, w := got.Series[i], whole.Series[i]
			if !g.T.Equal(w.T) || g.Cycles != w.Cycles || !reflect.DeepEqual(g.States, w.States) || !reflect.DeepEqual(g.Counters, w.Counters) {
				t.Errorf("sample %d: got %+v, want %+v", i, g, w)
			}
		}
		if got.Peaks["TIME_WAIT"].Total != 15000 {
			t.Errorf("peak TIME_WAIT = %d, want 15000 (5000+10000 at the same instant)", got.Peaks["TIME_WAIT"].Total)
		}
		if got.Provenance.Hostname != "a,b" {
			t.Errorf("hostname = %q, want a,b", got.Provenance.Hostname)
		}
		if got.Storm.Opened != 5000 || got.Storm.TimeToLastClose != 1 {
			t.Errorf("storm = %+v", got.Storm)
		}
	}
}

func TestMergeCounterScopes(t *testing.T) {
	d0, d1 := makeShardData(0, 10, 0), makeShardData(1, 10, 0)
	tests := []struct {
		name         string
		host0, host1 string
		ns           string
		wantTW       int64 // netns counter, 500 per shard
		wantOrphan   int64 // global counter, 7 per shard
		wantSampleTW int64 // per-sample TcpExt.TW: 100 and 200
	}{
		{"two hosts, isolated", "a", "b", "isolated", 1000, 14, 300},
		{"one host, isolated namespaces", "a", "a", "isolated", 1000, 7, 300},
		{"one host, host namespace", "a", "a", "host", 500, 7, 200},
		{"two hosts, host namespace", "a", "b", "host", 1000, 14, 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s0 := recordOf(t, &Shard{Index: 0, Count: 2}, tt.host0, tt.ns, d0)
			s1 := recordOf(t, &Shard{Index: 1, Count: 2}, tt.host1, tt.ns, d1)
			got, _, err := Merge([]*Run{s0, s1})
			if err != nil {
				t.Fatal(err)
			}
			c := map[string]int64{}
			for _, cd := range got.Counters {
				c[cd.Name] = cd.Delta
			}
			if c["TcpExt.TW"] != tt.wantTW || c["Sockstat.orphan"] != tt.wantOrphan {
				t.Errorf("counters = %v, want TW %d orphan %d", c, tt.wantTW, tt.wantOrphan)
			}
			if v := got.Series[0].Counters["TcpExt.TW"]; v != tt.wantSampleTW {
				t.Errorf("sample TcpExt.TW = %d, want %d", v, tt.wantSampleTW)
			}
		})
	}
}

func TestMergeMissingAndErrors(t *testing.T) {
	d := makeShardData(0, 10, 0)
	mk := func(id string, sh *Shard) *Run {
		r := recordOf(t, sh, "a", "isolated", d)
		r.ID = id
		return r
	}
	t.Run("missing shards", func(t *testing.T) {
		got, missing, err := Merge([]*Run{mk("x", &Shard{Index: 1, Count: 4})})
		if err != nil {
			t.Fatal(err)
		}
		want := []MissingShard{{"x", 0, 4}, {"x", 2, 4}, {"x", 3, 4}}
		if !reflect.DeepEqual(missing, want) {
			t.Errorf("missing = %v, want %v", missing, want)
		}
		if got.Scenarios[0].Cycles != 10 {
			t.Errorf("cycles = %d", got.Scenarios[0].Cycles)
		}
	})
	t.Run("unsharded passes through", func(t *testing.T) {
		r := mk("x", nil)
		got, missing, err := Merge([]*Run{r})
		if err != nil || got != r || missing != nil {
			t.Errorf("got %p %v %v, want the record itself", got, missing, err)
		}
	})
	bad := []struct {
		name string
		runs []*Run
	}{
		{"none", nil},
		{"different ids", []*Run{mk("x", &Shard{0, 2}), mk("y", &Shard{1, 2})}},
		{"duplicate shard", []*Run{mk("x", &Shard{0, 2}), mk("x", &Shard{0, 2})}},
		{"counts disagree", []*Run{mk("x", &Shard{0, 2}), mk("x", &Shard{1, 3})}},
		{"index out of range", []*Run{mk("x", &Shard{2, 2})}},
		{"sharded and whole", []*Run{mk("x", &Shard{0, 2}), mk("x", nil)}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := Merge(tt.runs); !errors.Is(err, ErrMerge) {
				t.Errorf("err = %v, want ErrMerge", err)
			}
		})
	}
	t.Run("different sysctls", func(t *testing.T) {
		a, b := mk("x", &Shard{0, 2}), mk("x", &Shard{1, 2})
		b.Sysctls.Applied = map[string]string{"net.ipv4.tcp_tw_reuse": "0"}
		if _, _, err := Merge([]*Run{a, b}); !errors.Is(err, ErrMerge) {
			t.Errorf("err = %v, want ErrMerge", err)
		}
	})
	t.Run("damaged histogram", func(t *testing.T) {
		a, b := mk("x", &Shard{0, 2}), mk("x", &Shard{1, 2})
		p := b.Scenarios[0].Phases["total"]
		p.Histogram = "not a histogram"
		b.Scenarios[0].Phases = map[string]Phase{"total": p}
		if _, _, err := Merge([]*Run{a, b}); !errors.Is(err, ErrMerge) || !errors.Is(err, ErrHistogram) {
			t.Errorf("err = %v, want ErrMerge and ErrHistogram", err)
		}
	})
}

func TestShardSlice(t *testing.T) {
	for _, total := range []int{0, 1, 7, 100, 1001, 65535} {
		for n := 1; n <= 9; n++ {
			sum, lo, hi := 0, total, 0
			for i := range n {
				s := ShardSlice(total, i, n)
				sum += s
				lo, hi = min(lo, s), max(hi, s)
			}
			if sum != total || hi-lo > 1 {
				t.Errorf("ShardSlice(%d, *, %d): sum %d, spread %d..%d", total, n, sum, lo, hi)
			}
		}
	}
	if ShardSlice(10, 3, 3) != 0 || ShardSlice(10, 0, 0) != 0 {
		t.Error("out-of-range shard must get nothing")
	}
}

// BenchmarkMerge measures merging 8 shards of 600 samples each.
func BenchmarkMerge(b *testing.B) {
	var shards []*Run
	for i := range 8 {
		d := makeShardData(uint64(i), 5000, 0)
		for j := 5; j < 600; j++ {
			s := d.series[0]
			s.T = mergeT0.Add(time.Duration(j+1) * time.Second)
			d.series = append(d.series, s)
		}
		shards = append(shards, recordOf(b, &Shard{Index: i, Count: 8}, "a", "isolated", d))
	}
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := Merge(shards); err != nil {
			b.Fatal(err)
		}
	}
}

// TestMergeMissingStates: a sample in which one shard did not count socket
// states marks the merged sample so, and does not make a peak.
func TestMergeMissingStates(t *testing.T) {
	d0, d1 := makeShardData(0, 100, 0), makeShardData(1, 100, 0)
	s0 := recordOf(t, &Shard{Index: 0, Count: 2}, "a", "isolated", d0)
	s1 := recordOf(t, &Shard{Index: 1, Count: 2}, "a", "isolated", d1)
	last := len(s1.Series) - 1
	s1.Series[last].States = nil
	s1.Series[last].Missing = []string{"states"}
	got, _, err := Merge([]*Run{s0, s1})
	if err != nil {
		t.Fatal(err)
	}
	if m := got.Series[last].Missing; len(m) != 1 || m[0] != "states" {
		t.Errorf("merged sample missing %v, want [states]", m)
	}
	// Shard 0 alone at the last sample has 5000; the full sum before it
	// is 4000+8000.
	if p := got.Peaks["TIME_WAIT"].Total; p != 12000 {
		t.Errorf("peak TIME_WAIT = %d, want 12000 from the last complete sample", p)
	}
}

// TestMergeFinalPartialSample: a shard's final sample, taken at Stop a
// little after its last tick, falls in the same interval as that tick. Its
// deltas add to the tick's, its states replace them: the shard's sockets
// are not counted twice.
func TestMergeFinalPartialSample(t *testing.T) {
	d0, d1 := makeShardData(0, 100, 0), makeShardData(1, 100, 0)
	s0 := recordOf(t, &Shard{Index: 0, Count: 2}, "a", "isolated", d0)
	s1 := recordOf(t, &Shard{Index: 1, Count: 2}, "b", "isolated", d1)
	last := s0.Series[len(s0.Series)-1]
	s0.Series = append(s0.Series, Sample{
		T:        last.T.Add(300 * time.Millisecond),
		Elapsed:  last.Elapsed + 0.3,
		States:   map[string]StateCount{"TIME_WAIT": {Total: 4900}},
		Counters: map[string]int64{"TcpExt.TW": 7},
		Cycles:   3,
	})
	got, _, err := Merge([]*Run{s0, s1})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Series) != 5 {
		t.Fatalf("series: got %d samples, want 5", len(got.Series))
	}
	g := got.Series[4]
	// Shard 1's last sample has 10000 in TIME_WAIT; shard 0's final one 4900.
	if tw := g.States["TIME_WAIT"].Total; tw != 14900 {
		t.Errorf("TIME_WAIT = %d, want 14900 (4900+10000)", tw)
	}
	if fw := g.States["FIN_WAIT2"].Total; fw != 4 {
		t.Errorf("FIN_WAIT2 = %d, want 4 (shard 1 only: shard 0's final sample has none)", fw)
	}
	if c := g.Counters["TcpExt.TW"]; c != 100+7+200 {
		t.Errorf("TcpExt.TW = %d, want 307 (100+7 from shard 0, 200 from shard 1)", c)
	}
	if g.Cycles != 20+3+20 {
		t.Errorf("cycles = %d, want 43", g.Cycles)
	}
	if p := got.Peaks["TIME_WAIT"].Total; p != 14900 {
		t.Errorf("peak TIME_WAIT = %d, want 14900", p)
	}
}

// TestMergeUnfinished: unfinished connections, hold waits and outages of
// shards add up in the merge, so attempts = cycles + errors + unfinished
// holds for the whole run as for each shard.
func TestMergeUnfinished(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	shard := func(i int, drain uint64, out []Outage) *Run {
		return &Run{Schema: SchemaVersion, ID: "r", Shard: &Shard{Index: i, Count: 2},
			Scenarios: []ScenarioResult{{Name: "full-close", Weight: 1, Cycles: 10, Attempts: 10 + drain,
				Unfinished: map[string]uint64{"drain": drain}}},
			Totals: Totals{Cycles: 10, Attempts: 10 + drain, Unfinished: map[string]uint64{"drain": drain},
				TargetHoldWaits: &HoldWaits{Count: 1, WaitedNs: 5}},
			Outages: out}
	}
	m, missing, err := Merge([]*Run{
		shard(1, 3, []Outage{{Start: t0.Add(time.Second), End: t0.Add(2 * time.Second), Refused: 4}}),
		shard(0, 2, []Outage{{Start: t0, Refused: 1}}),
	})
	if err != nil || len(missing) != 0 {
		t.Fatal(err, missing)
	}
	sc := m.Scenarios[0]
	if sc.Unfinished["drain"] != 5 || !sc.Accounted() || !m.Totals.Accounted() {
		t.Errorf("scenario: attempts %d cycles %d unfinished %v", sc.Attempts, sc.Cycles, sc.Unfinished)
	}
	if m.Totals.Unfinished["drain"] != 5 || m.Totals.TargetHoldWaits == nil || m.Totals.TargetHoldWaits.Count != 2 {
		t.Errorf("totals: %+v", m.Totals)
	}
	if len(m.Outages) != 2 || !m.Outages[0].Start.Equal(t0) || m.Outages[1].Refused != 4 {
		t.Errorf("outages %+v, want both in start order", m.Outages)
	}
	if m.Totals.ClientHoldWaits != nil {
		t.Errorf("client hold waits %+v from shards without any", m.Totals.ClientHoldWaits)
	}
	lost := m.Scenarios[0]
	lost.Unfinished = nil
	if lost.Accounted() {
		t.Errorf("attempts %d cycles %d without unfinished counted as accounted", lost.Attempts, lost.Cycles)
	}
	withErrors := ScenarioResult{Attempts: 5, Cycles: 2, Errors: map[string]ErrorCount{"reset": {Count: 3}}}
	if !withErrors.Accounted() {
		t.Errorf("%+v: errors not counted", withErrors)
	}
}
