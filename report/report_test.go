package report

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/perf/benchfmt"

	"github.com/closeload/closeload/results"
)

func findRowIn(t *testing.T, c *Comparison, table, metric string) Row {
	t.Helper()
	for _, tb := range c.Tables {
		if tb.Scenario != table {
			continue
		}
		for _, r := range tb.Rows {
			if r.Metric == metric {
				return r
			}
		}
	}
	t.Fatalf("no row %q in table %q", metric, table)
	return Row{}
}

func TestLoad(t *testing.T) {
	t.Run("damaged skipped, foreign ignored", func(t *testing.T) {
		in, skipped, err := Load([]string{"testdata/runs/sharded"})
		if err != nil {
			t.Fatal(err)
		}
		if len(in) != 2 {
			t.Errorf("%d records, want the 2 good shards", len(in))
		}
		if len(skipped) != 1 || skipped[0].Path != filepath.Join("testdata", "runs", "sharded", "storm-shard1.json") ||
			!strings.Contains(skipped[0].Err, "damaged record") {
			t.Errorf("skipped = %v, want storm-shard1.json named as damaged", skipped)
		}
	})
	t.Run("missing path skipped", func(t *testing.T) {
		in, skipped, err := Load([]string{"testdata/runs/tw-reuse", "testdata/nope.json"})
		if err != nil || len(in) != 6 || len(skipped) != 1 || skipped[0].Path != "testdata/nope.json" {
			t.Errorf("got %d records, skipped %v, err %v", len(in), skipped, err)
		}
	})
	t.Run("nothing usable", func(t *testing.T) {
		_, skipped, err := Load([]string{"testdata/runs/sharded/storm-shard1.json", "testdata/nope.json"})
		if !errors.Is(err, ErrNoRecords) || len(skipped) != 2 {
			t.Errorf("err = %v, skipped %v; want ErrNoRecords naming both", err, skipped)
		}
		if _, _, err := Load(nil); !errors.Is(err, ErrNoRecords) {
			t.Errorf("no args: err = %v", err)
		}
	})
	t.Run("matrix order", func(t *testing.T) {
		in, _, err := Load([]string{"testdata/runs/tw-reuse"})
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(in); i++ {
			if in[i].Run.Start.Before(in[i-1].Run.Start) {
				t.Errorf("records out of run order at %d", i)
			}
		}
	})
	t.Run("labels", func(t *testing.T) {
		a := filepath.Join("testdata", "runs", "tw-reuse", "20260301T1000-tw0-r0.json")
		b := filepath.Join("testdata", "runs", "tw-reuse", "20260301T1000-tw1-r0.json")
		in, _, err := Load([]string{"before=" + a, "after=" + b})
		if err != nil {
			t.Fatal(err)
		}
		c, err := CompareInputs(in, Options{Baseline: "after"})
		if err != nil {
			t.Fatal(err)
		}
		if c.Variants[0].Name != "before" || c.Variants[1].Name != "after" || c.Baseline != 1 {
			t.Errorf("variants %q %q, baseline %d", c.Variants[0].Name, c.Variants[1].Name, c.Baseline)
		}
		in, _, err = Load([]string{"old=testdata/runs/tw-reuse"})
		if err != nil {
			t.Fatal(err)
		}
		c, err = CompareInputs(in, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Variants) != 2 || c.Variants[0].Name != "old/tcp_tw_reuse=0" {
			t.Errorf("one label over two variants: names %v", c.Variants)
		}
	})
}

// TestDoneWhen is the acceptance: tcp_tw_reuse 0 against 1 shows
// the rate ratio, TWRecycled and addr-not-available errors, each with its
// significance, and says "too few runs" because with 3 repeats that is the
// truth.
func TestDoneWhen(t *testing.T) {
	c := loadCompare(t, []string{"testdata/runs/tw-reuse"}, Options{})
	if len(c.Variants) != 2 || c.Variants[0].Name != "tcp_tw_reuse=0" || c.Variants[1].Name != "tcp_tw_reuse=1" {
		t.Fatalf("variants = %+v", c.Variants)
	}
	rate := findRowIn(t, c, "client-halfclose", "cycles/s")
	if r := rate.Cells[1].Ratio; r == nil || *r < 4 || *r > 6 {
		t.Errorf("rate ratio = %v, want about 5", r)
	}
	for _, m := range []string{"cycles/s", "TcpExt.TWRecycled", "errors addr-not-available"} {
		cell := findRowIn(t, c, "client-halfclose", m).Cells[1]
		if cell.Verdict != VerdictTooFew || cell.P == nil {
			t.Errorf("%s: verdict %q p %v, want %q with a p-value", m, cell.Verdict, cell.P, VerdictTooFew)
		}
	}
	var b bytes.Buffer
	if err := c.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"×5.09 too few runs (p=0.100 n=3)", "TcpExt.TWRecycled", "+117k too few runs", "errors addr-not-available", "repeat each variant at least 4 times"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q", want)
		}
	}
	// With 5 repeats a real difference is significant.
	c = loadCompare(t, []string{"testdata/runs/fin-timeout"}, Options{})
	fw := findRowIn(t, c, "all", "peak FIN_WAIT2 orphaned").Cells[1]
	if fw.Verdict != VerdictSignificant || *fw.Ratio > 0.6 {
		t.Errorf("orphaned FIN_WAIT2 with tcp_fin_timeout=5: %+v, want a significant halving", fw)
	}
	cw := findRowIn(t, c, "all", "peak CLOSE_WAIT").Cells[1]
	if cw.Verdict != VerdictNotSignificant {
		t.Errorf("CLOSE_WAIT: verdict %q, want %q", cw.Verdict, VerdictNotSignificant)
	}
}

func TestVerdicts(t *testing.T) {
	tests := []struct {
		name      string
		base, new []float64
		better    int
		want      string
		direction string
		ratio     float64 // NaN: none
	}{
		{"separated 5+5", []float64{10, 11, 12, 13, 14}, []float64{20, 21, 22, 23, 24}, +1, VerdictSignificant, "better", 22.0 / 12},
		{"separated lower is better", []float64{10, 11, 12, 13, 14}, []float64{20, 21, 22, 23, 24}, -1, VerdictSignificant, "worse", 22.0 / 12},
		{"separated 3+3", []float64{10, 11, 12}, []float64{20, 21, 22}, +1, VerdictTooFew, "", 21.0 / 11},
		{"overlapping 6+6", []float64{10, 12, 14, 16, 18, 20}, []float64{11, 13, 15, 17, 19, 21}, +1, VerdictNotSignificant, "", 16.0 / 15},
		{"identical", []float64{0, 0, 0}, []float64{0, 0, 0}, -1, VerdictIdentical, "", 1},
		{"from zero", []float64{0, 0, 0, 0}, []float64{5, 6, 7, 8}, 0, VerdictSignificant, "", math.NaN()},
		{"no data", []float64{1, 2}, nil, 0, VerdictNoData, "", math.NaN()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &rowAcc{def: metricDef{metric: "m", better: tt.better}, vals: [][]float64{tt.base, tt.new}}
			row := compareRow(a, 0, Options{Alpha: 0.05, Confidence: 0.95}, func(error) {})
			cell := row.Cells[1]
			if cell.Verdict != tt.want || cell.Direction != tt.direction {
				t.Errorf("verdict %q %q, want %q %q (p=%v)", cell.Verdict, cell.Direction, tt.want, tt.direction, cell.P)
			}
			switch {
			case math.IsNaN(tt.ratio) && cell.Ratio != nil:
				t.Errorf("ratio %v, want none", *cell.Ratio)
			case !math.IsNaN(tt.ratio) && (cell.Ratio == nil || math.Abs(*cell.Ratio-tt.ratio) > 1e-9):
				t.Errorf("ratio %v, want %v", cell.Ratio, tt.ratio)
			}
			if row.Cells[0].Verdict != VerdictBaseline {
				t.Errorf("baseline verdict %q", row.Cells[0].Verdict)
			}
		})
	}
}

func TestBaseline(t *testing.T) {
	in, _, err := Load([]string{"testdata/runs/tw-reuse"})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"tcp_tw_reuse=1", "1"} {
		c, err := CompareInputs(in, Options{Baseline: b})
		if err != nil || c.Baseline != 1 {
			t.Errorf("--baseline %s: baseline %v, err %v", b, c, err)
			continue
		}
		r := findRowIn(t, c, "client-halfclose", "cycles/s")
		if r.Cells[1].Verdict != VerdictBaseline || r.Cells[0].Ratio == nil || *r.Cells[0].Ratio > 0.25 {
			t.Errorf("--baseline %s: cells %+v", b, r.Cells)
		}
	}
	if _, err := CompareInputs(in, Options{Baseline: "nope"}); !errors.Is(err, ErrBaseline) || !strings.Contains(err.Error(), "tcp_tw_reuse=0") {
		t.Errorf("unknown baseline: err = %v, want ErrBaseline naming the variants", err)
	}
}

// TestShardsMergeLikeWhole compares the merged shards of the fixture storm
// with histograms merged by hand: same counts, same percentiles.
func TestShardsMergeLikeWhole(t *testing.T) {
	in, _, err := Load([]string{"testdata/runs/sharded"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := CompareInputs(in, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Variants) != 1 || len(c.Variants[0].Runs) != 1 {
		t.Fatalf("shards of one run make one repeat of one variant: %+v", c.Variants)
	}
	info := c.Variants[0].Runs[0]
	if info.Shards != 3 || len(info.Missing) != 1 || info.Missing[0].Index != 1 {
		t.Errorf("run info %+v, want shard 1 of 3 missing", info)
	}
	if !strings.Contains(strings.Join(c.Notes, "\n"), "shard 1/3 missing") {
		t.Errorf("notes %q do not flag the missing shard", c.Notes)
	}
	var cycles uint64
	whole := results.NewHistogram()
	for _, i := range in {
		cycles += i.Run.Scenarios[0].Cycles
		h, err := results.DecodeHistogram(i.Run.Scenarios[0].Phases["total"].Histogram)
		if err != nil {
			t.Fatal(err)
		}
		whole.Merge(h)
	}
	runs, err := c.Runs(0)
	if err != nil {
		t.Fatal(err)
	}
	merged := runs[0]
	if merged.Scenarios[0].Cycles != cycles {
		t.Errorf("cycles %d, want %d", merged.Scenarios[0].Cycles, cycles)
	}
	p := merged.Scenarios[0].Phases["total"]
	if p.Count != whole.TotalCount() || p.P99 != whole.ValueAtPercentile(99) || p.P50 != whole.ValueAtPercentile(50) || p.Max != whole.Max() {
		t.Errorf("merged total phase %+v, whole count %d p50 %d p99 %d", p, whole.TotalCount(), whole.ValueAtPercentile(50), whole.ValueAtPercentile(99))
	}
	if got := findRowIn(t, c, "client-halfclose", "total p99").Cells[0].Median; got != float64(whole.ValueAtPercentile(99)) {
		t.Errorf("table p99 %v, want %d", got, whole.ValueAtPercentile(99))
	}
}

func TestBenchParses(t *testing.T) {
	for _, gc := range goldenCases {
		t.Run(gc.name, func(t *testing.T) {
			c := loadCompare(t, gc.args, gc.opts)
			var b bytes.Buffer
			if err := c.WriteBench(&b); err != nil {
				t.Fatal(err)
			}
			rd := benchfmt.NewReader(&b, gc.name+".bench")
			n := 0
			variants := map[string]int{}
			units := map[string]bool{}
			for rd.Scan() {
				switch rec := rd.Result().(type) {
				case *benchfmt.SyntaxError:
					t.Fatalf("bench output does not parse: %v", rec)
				case *benchfmt.Result:
					n++
					variants[rec.GetConfig("variant")]++
					for _, v := range rec.Values {
						units[v.Unit] = true
					}
				}
			}
			if err := rd.Err(); err != nil {
				t.Fatal(err)
			}
			want := 0
			for _, v := range c.Variants {
				want += len(v.Runs) * len(c.Tables)
			}
			if n != want {
				t.Errorf("%d benchmark lines, want %d (runs × tables)", n, want)
			}
			for _, v := range c.Variants {
				if variants[v.Name] != len(v.Runs)*len(c.Tables) {
					t.Errorf("variant %s: %d lines", v.Name, variants[v.Name])
				}
			}
			// benchfmt tidies "-ns" units into "-sec", as benchstat shows them.
			for _, u := range []string{"cycles/s", "total-p99-sec", "connect-p99.9-sec", "errors", "peak-timewait", "peak-finwait2", "peak-closewait"} {
				if !units[u] {
					t.Errorf("no %s metric (units %v)", u, units)
				}
			}
		})
	}
}

func TestJSON(t *testing.T) {
	c := loadCompare(t, []string{"testdata/runs/tw-reuse", "testdata/runs/sharded/storm-shard1.json"}, Options{})
	var b bytes.Buffer
	if err := c.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back Export
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Variants) != 2 || len(back.Rows) != len(c.ExportRows()) || len(back.Skipped) != 1 || back.Variants[back.Baseline].Name != "tcp_tw_reuse=0" {
		t.Errorf("round trip: %d variants, %d rows, skipped %v, baseline %d", len(back.Variants), len(back.Rows), back.Skipped, back.Baseline)
	}
	row := back.Rows[1]
	if row.Metric != "cycles/s" || row.Variant != "tcp_tw_reuse=1" || row.Verdict != VerdictTooFew || len(row.Values) != 3 {
		t.Errorf("second row %+v", row)
	}
}

// TestCSVJSONOneSchema checks the CSV header is the JSON rows' field names,
// every row names its variant, and values are arrays in JSON.
func TestCSVJSONOneSchema(t *testing.T) {
	c := loadCompare(t, []string{"testdata/runs/tw-reuse"}, Options{})
	var cb, jb bytes.Buffer
	if err := c.WriteCSV(&cb); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteJSON(&jb); err != nil {
		t.Fatal(err)
	}
	lines, err := csv.NewReader(&cb).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Rows []map[string]json.RawMessage `json:"rows"`
	}
	if err := json.Unmarshal(jb.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Rows) != len(lines)-1 {
		t.Fatalf("JSON has %d rows, CSV %d", len(doc.Rows), len(lines)-1)
	}
	header := lines[0]
	for i, jr := range doc.Rows {
		if len(jr) != len(header) {
			t.Errorf("JSON row %d has %d fields, CSV %d", i, len(jr), len(header))
		}
		for j, col := range header {
			raw, ok := jr[col]
			if !ok {
				t.Fatalf("JSON row %d lacks CSV column %q", i, col)
			}
			switch col {
			case "variant":
				var v string
				if json.Unmarshal(raw, &v) != nil || v == "" || v != lines[i+1][j] {
					t.Errorf("row %d variant: JSON %s, CSV %q", i, raw, lines[i+1][j])
				}
			case "values":
				var vs []float64
				if err := json.Unmarshal(raw, &vs); err != nil {
					t.Errorf("row %d values %s: not an array of numbers: %v", i, raw, err)
				}
				if n := len(strings.Split(lines[i+1][j], ";")); lines[i+1][j] != "" && n != len(vs) {
					t.Errorf("row %d: %d values in JSON, %d in CSV", i, len(vs), n)
				}
			}
		}
	}
}

func TestHlog(t *testing.T) {
	c := loadCompare(t, []string{"testdata/runs/tw-reuse"}, Options{})
	var b bytes.Buffer
	if err := c.WriteHlog(&b); err != nil {
		t.Fatal(err)
	}
	rd := hdrhistogram.NewHistogramLogReader(&b)
	counts := map[string]int64{}
	lines := 0
	for {
		h, err := rd.NextIntervalHistogram()
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if h == nil {
			break
		}
		lines++
		counts[h.Tag()] += h.TotalCount()
	}
	if lines != 6*4+6 {
		t.Errorf("%d intervals, want 30 (6 runs × 4 phases, and 6 untagged)", lines)
	}
	var allTotal int64
	for vi, v := range c.Variants {
		var want int64
		runs, err := c.Runs(vi)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range runs {
			want += r.Scenarios[0].Phases["total"].Count
		}
		allTotal += want
		tag := v.Name + "/client-halfclose/total"
		if counts[tag] != want {
			t.Errorf("%s: %d values, want %d", tag, counts[tag], want)
		}
	}
	if counts[""] != allTotal {
		t.Errorf("untagged intervals hold %d values, want every run's total phase: %d", counts[""], allTotal)
	}
}

// TestCompareRecordsWithoutSeries makes sure records from a run without a
// collector (no series, peaks or counters) still compare.
func TestCompareRecordsWithoutSeries(t *testing.T) {
	in, _, err := Load([]string{"testdata/runs/tw-reuse"})
	if err != nil {
		t.Fatal(err)
	}
	var runs []*results.Run
	for _, i := range in {
		r := *i.Run
		r.Series, r.Peaks, r.Counters, r.Collector = nil, nil, nil, nil
		runs = append(runs, &r)
	}
	c, err := Compare(runs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range c.Tables {
		for _, r := range tb.Rows {
			if strings.HasPrefix(r.Metric, "peak") || strings.HasPrefix(r.Metric, "Tcp") {
				t.Errorf("row %q without any sample", r.Metric)
			}
		}
	}
	plots, err := c.Plots()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range plots {
		if strings.HasPrefix(p.Name, "states") || p.Name == "throughput" {
			t.Errorf("plot %s without a series", p.Name)
		}
	}
	dir := t.TempDir()
	if err := WriteHTML(dir, c, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "index.html")); err != nil {
		t.Fatal(err)
	}
}
