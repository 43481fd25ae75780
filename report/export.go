package report

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"

	"golang.org/x/perf/benchfmt"

	"github.com/closeload/closeload/results"
)

// ExportRow is one variant's figure for one metric of one scenario: a line
// of the CSV output and an element of "rows" in the JSON output, under the
// same field names, so a pipeline reads either the same way.
type ExportRow struct {
	Scenario string `json:"scenario"`
	Metric   string `json:"metric"`
	Unit     string `json:"unit"`
	Variant  string `json:"variant"`
	Baseline bool   `json:"baseline"`
	N        int    `json:"n"`
	// Median is absent when the variant has no value for the metric.
	Median    *float64 `json:"median"`
	Lo        *float64 `json:"lo"`
	Hi        *float64 `json:"hi"`
	Ratio     *float64 `json:"ratio"`
	P         *float64 `json:"p"`
	Verdict   string   `json:"verdict"`
	Direction string   `json:"direction"`
	// Values holds one value per repeat, in run order (in CSV, joined by
	// ';' in one cell).
	Values []float64 `json:"values"`
}

// Export is the JSON output: the variants, one row per scenario, metric
// and variant, and what the reader must know.
type Export struct {
	Alpha      float64 `json:"alpha"`
	Confidence float64 `json:"confidence"`
	// Baseline is the index of the baseline in Variants (its rows say
	// "baseline": true).
	Baseline int         `json:"baseline"`
	Variants []Variant   `json:"variants"`
	Rows     []ExportRow `json:"rows"`
	Notes    []string    `json:"notes,omitempty"`
	Skipped  []Skipped   `json:"skipped,omitempty"`
}

// ExportRows flattens the tables into rows that each name their variant.
func (c *Comparison) ExportRows() []ExportRow {
	var out []ExportRow
	for _, t := range c.Tables {
		for _, r := range t.Rows {
			for i, cell := range r.Cells {
				er := ExportRow{Scenario: t.Scenario, Metric: r.Metric, Unit: r.Unit, Variant: c.Variants[i].Name,
					Baseline: i == c.Baseline, N: cell.N, Lo: cell.Lo, Hi: cell.Hi, Ratio: cell.Ratio, P: cell.P,
					Verdict: cell.Verdict, Direction: cell.Direction, Values: cell.Values}
				if er.Values == nil {
					er.Values = []float64{}
				}
				if cell.N > 0 {
					m := cell.Median
					er.Median = &m
				}
				out = append(out, er)
			}
		}
	}
	return out
}

// exportColumns are the CSV header: ExportRow's JSON field names, so the
// two formats cannot drift apart.
func exportColumns() []string {
	t := reflect.TypeFor[ExportRow]()
	cols := make([]string, t.NumField())
	for i := range cols {
		cols[i], _, _ = strings.Cut(t.Field(i).Tag.Get("json"), ",")
	}
	return cols
}

// csv is the row as CSV cells, in exportColumns order.
func (r ExportRow) csv() []string {
	vals := make([]string, len(r.Values))
	for j, v := range r.Values {
		vals[j] = num(v)
	}
	return []string{r.Scenario, r.Metric, r.Unit, r.Variant, strconv.FormatBool(r.Baseline), strconv.Itoa(r.N),
		optNum(r.Median), optNum(r.Lo), optNum(r.Hi), optNum(r.Ratio), optNum(r.P), r.Verdict, r.Direction,
		strings.Join(vals, ";")}
}

// WriteCSV writes one line per table, metric and variant, with raw numbers
// (nanoseconds, counts) and the repeats' values, for spreadsheets and
// pandas.
func (c *Comparison) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(exportColumns()); err != nil {
		return err
	}
	for _, r := range c.ExportRows() {
		if err := cw.Write(r.csv()); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// num prints a raw number exactly, integers without an exponent.
func num(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func optNum(v *float64) string {
	if v == nil {
		return ""
	}
	return num(*v)
}

// WriteJSON writes the comparison as indented JSON: an Export, whose rows
// are the CSV output's lines.
func (c *Comparison) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(Export{Alpha: c.Alpha, Confidence: c.Confidence, Baseline: c.Baseline,
		Variants: c.Variants, Rows: c.ExportRows(), Notes: c.Notes, Skipped: c.Skipped})
}

// WriteBench writes one Go benchmark line per run (and per scenario when
// the mix has several), with custom units (cycles/s, total-p99-ns,
// peak-timewait, TcpExt.TWRecycled, ...), so benchstat compares variants
// (benchstat -col variant FILE) or commits (benchstat old.txt new.txt)
// directly. The variant and kernel are file-level configuration lines. It
// is written with benchfmt's Writer, the format's own implementation.
func (c *Comparison) WriteBench(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fw := benchfmt.NewWriter(bw)
	for vi, g := range c.groups {
		for ri, r := range g.runs {
			for _, t := range c.Tables {
				res := &benchfmt.Result{
					Config: []benchfmt.Config{
						{Key: "pkg", Value: []byte("github.com/closeload/closeload"), File: true},
						{Key: "kernel", Value: []byte(configValue(r.Provenance.Kernel)), File: true},
						{Key: "variant", Value: []byte(configValue(g.name)), File: true},
					},
					Name:  benchfmt.Name("Closeload/scenario=" + benchName(t.Scenario)),
					Iters: int(min(benchIterations(r, t.Scenario), math.MaxInt32)),
				}
				for _, row := range t.Rows {
					if v, ok := runValue(row, vi, ri); ok {
						res.Values = append(res.Values, benchfmt.Value{Value: roundFloatNoise(v), Unit: row.Bench})
					}
				}
				if err := fw.Write(res); err != nil {
					return err
				}
			}
		}
	}
	return bw.Flush()
}

// roundFloatNoise drops the last digits of binary rounding (4011.3999999999996
// → 4011.4), which the benchmark format would print as they are.
func roundFloatNoise(v float64) float64 {
	r, err := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 12, 64), 64)
	if err != nil {
		return v
	}
	return r
}

// runValue is repeat ri's value of a row, if that run had one.
func runValue(row Row, vi, ri int) (float64, bool) {
	if vi >= len(row.vals) || ri >= len(row.vals[vi]) || math.IsNaN(row.vals[vi][ri]) {
		return 0, false
	}
	return row.vals[vi][ri], true
}

// benchIterations is the number of cycles a benchmark line stands for.
func benchIterations(r *results.Run, scenario string) uint64 {
	for _, sc := range r.Scenarios {
		if sc.Name == scenario {
			return sc.Cycles
		}
	}
	return r.Totals.Cycles
}

// benchName keeps a benchmark name to one field of the format.
func benchName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '/' {
			return '_'
		}
		return r
	}, s)
}

func configValue(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if s == "" {
		return "unknown"
	}
	return s
}
