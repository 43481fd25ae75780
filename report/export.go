package report

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/closeload/closeload/results"
)

// WriteCSV writes one line per table, metric and variant, with raw numbers
// (nanoseconds, counts) and the repeats' values, for spreadsheets and
// pandas.
func (c *Comparison) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{"scenario", "metric", "unit", "variant", "baseline", "n", "median", "lo", "hi", "ratio", "p", "verdict", "direction", "values"}); err != nil {
		return err
	}
	for _, t := range c.Tables {
		for _, r := range t.Rows {
			for i, cell := range r.Cells {
				vals := make([]string, len(cell.Values))
				for j, v := range cell.Values {
					vals[j] = num(v)
				}
				rec := []string{t.Scenario, r.Metric, r.Unit, c.Variants[i].Name, strconv.FormatBool(i == c.Baseline),
					strconv.Itoa(cell.N), "", optNum(cell.Lo), optNum(cell.Hi), optNum(cell.Ratio), optNum(cell.P), cell.Verdict, cell.Direction,
					strings.Join(vals, ";")}
				if cell.N > 0 {
					rec[6] = num(cell.Median)
				}
				if err := cw.Write(rec); err != nil {
					return err
				}
			}
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

// WriteJSON writes the whole comparison as indented JSON.
func (c *Comparison) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(c)
}

// WriteBench writes one Go benchmark line per run (and per scenario when
// the mix has several), with custom units (cycles/s, total-p99-ns,
// peak-timewait, TcpExt.TWRecycled, ...), so benchstat compares variants
// (benchstat -col variant FILE) or commits (benchstat old.txt new.txt)
// directly. The variant is a file-level configuration line.
func (c *Comparison) WriteBench(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, "pkg: github.com/closeload/closeload")
	lastKernel, lastVariant := "", ""
	for vi, g := range c.groups {
		for ri, r := range g.runs {
			if k := configValue(r.Provenance.Kernel); k != lastKernel {
				fmt.Fprintf(bw, "kernel: %s\n", k)
				lastKernel = k
			}
			if v := configValue(g.name); v != lastVariant {
				fmt.Fprintf(bw, "variant: %s\n", v)
				lastVariant = v
			}
			for _, t := range c.Tables {
				iters := benchIterations(r, t.Scenario)
				fmt.Fprintf(bw, "BenchmarkCloseload/scenario=%s %d", benchName(t.Scenario), iters)
				for _, row := range t.Rows {
					v, ok := runValue(row, vi, ri)
					if !ok {
						continue
					}
					fmt.Fprintf(bw, " %s %s", num(v), row.Bench)
				}
				fmt.Fprintln(bw)
			}
		}
	}
	return bw.Flush()
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
