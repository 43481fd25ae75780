package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/closeload/closeload/report"
	"github.com/closeload/closeload/results"
	"github.com/spf13/cobra"
)

// reportFormats are the accepted --format values.
var reportFormats = []string{"text", "markdown", "csv", "json", "bench"}

func newReportCmd() *cobra.Command {
	var (
		format, baseline, htmlDir, plotsDir, hlogPath, out string
		maxRegression                                      string
		alpha                                              float64
	)
	cmd := &cobra.Command{
		Use:   "report [flags] RECORD|DIR|LABEL=PATH...",
		Short: "Compare runs side by side: ratios, significance, plots, HTML, benchstat format",
		Long: `report compares run records. Arguments are record files, directories (a matrix's
results directory: every record below it) or LABEL=PATH (the label names the
variant of every record under PATH), in any order. Records of the same variant
(sysctls and configuration) are repeats; shards of one run id are merged and
missing shards flagged; a damaged record is named and skipped.

Per scenario, each variant gets a column: cycles/s, p50/p99/p99.9 per phase,
errors by class, peak TIME_WAIT/FIN_WAIT2/CLOSE_WAIT and close-related kernel
counters, each as a ratio to the baseline with a Mann-Whitney U test over the
repeats (benchstat's statistics). "too few runs" means no difference could be
significant with that many repeats.`,
		Example: `  closeload report results/m-20260301-1000
  closeload report --baseline tcp_tw_reuse=1 --html report-html results/m-20260301-1000
  closeload report old=results/before.json new=results/after.json
  closeload report --format bench results/m-1 > new.txt && benchstat -col variant new.txt
  closeload report --baseline base --max-regression 5% base=results/baseline/client-halfclose rc=results/rc`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !slices.Contains(reportFormats, format) {
				return usagef("--format: %q is not one of %s", format, strings.Join(reportFormats, ", "))
			}
			if alpha <= 0 || alpha >= 1 {
				return usagef("--alpha: %g is not a level between 0 and 1 (such as 0.05)", alpha)
			}
			limit := -1.0
			if cmd.Flags().Changed("max-regression") {
				l, err := parseRegressionLimit(maxRegression)
				if err != nil {
					return usagef("--max-regression: %v", err)
				}
				limit = l
			}
			inputs, skipped, err := report.Load(args)
			for _, s := range skipped {
				fmt.Fprintf(cmd.ErrOrStderr(), "closeload report: %s\n", s)
			}
			if err != nil {
				return err
			}
			c, err := report.CompareInputs(inputs, report.Options{Baseline: baseline, Alpha: alpha})
			if errors.Is(err, report.ErrBaseline) {
				return usagef("--baseline: %v", err)
			}
			if err != nil {
				return err
			}
			c.Skipped = skipped
			var b bytes.Buffer
			if err := writeReport(&b, c, format); err != nil {
				return err
			}
			if out == "" || out == "-" {
				if _, err := cmd.OutOrStdout().Write(b.Bytes()); err != nil {
					return err
				}
			} else if err := results.WriteOutput(out, b.Bytes()); err != nil {
				return err
			}
			if plotsDir != "" {
				paths, err := report.WritePlots(plotsDir, c)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "closeload report: %d plot files in %s\n", len(paths), plotsDir)
			}
			if htmlDir != "" {
				if err := report.WriteHTML(htmlDir, c, nil); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "closeload report: page %s/index.html\n", strings.TrimSuffix(htmlDir, "/"))
			}
			if hlogPath != "" {
				var hb bytes.Buffer
				if err := c.WriteHlog(&hb); err != nil {
					return err
				}
				if err := results.WriteOutput(hlogPath, hb.Bytes()); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "closeload report: histogram log %s\n", hlogPath)
			}
			if limit >= 0 {
				regs, err := c.Gate(limit)
				for _, r := range regs {
					fmt.Fprintf(cmd.ErrOrStderr(), "closeload report: regression: %s\n", r)
				}
				if err == nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "closeload report: no figure worse than baseline %s by more than %s with a significant difference\n",
						c.Variants[c.Baseline].Name, maxRegression)
				}
				return err
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&format, "format", "f", "text", "output format: "+strings.Join(reportFormats, ", ")+" (bench: Go benchmark format for benchstat)")
	fs.StringVarP(&baseline, "baseline", "b", "", "variant the others are compared with: its name, label or index (default: the first)")
	fs.Float64Var(&alpha, "alpha", 0.05, "significance level of the Mann-Whitney U test")
	fs.StringVarP(&out, "out", "o", "", "write the report to this file instead of standard output")
	fs.StringVar(&htmlDir, "html", "", "also write a self-contained page DIR/index.html (tables, plots, provenance)")
	fs.StringVar(&plotsDir, "plots", "", "also write every plot as PNG and SVG into this directory")
	fs.StringVar(&maxRegression, "max-regression", "", "exit 3 when a variant's rate, phase latency or errors are worse than the baseline's by more than this (5% or 0.05) and the difference is significant")
	fs.StringVar(&hlogPath, "hlog", "", "also write the merged latency histograms as an HdrHistogram interval log")
	return cmd
}

// parseRegressionLimit reads a limit such as 5% or 0.05 as a fraction.
func parseRegressionLimit(s string) (float64, error) {
	t := strings.TrimSpace(s)
	pct := strings.HasSuffix(t, "%")
	v, err := strconv.ParseFloat(strings.TrimSuffix(t, "%"), 64)
	if err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q is not a limit: want a percentage such as 5%% or a fraction such as 0.05", s)
	}
	if pct {
		v /= 100
	}
	return v, nil
}

func writeReport(w io.Writer, c *report.Comparison, format string) error {
	switch format {
	case "markdown":
		return c.WriteMarkdown(w)
	case "csv":
		return c.WriteCSV(w)
	case "json":
		return c.WriteJSON(w)
	case "bench":
		return c.WriteBench(w)
	}
	return c.WriteText(w)
}
