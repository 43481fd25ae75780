package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/closeload/closeload/report"
	"github.com/closeload/closeload/results"
	"github.com/closeload/closeload/runner"
	"github.com/spf13/cobra"
)

func newMatrixCmd() *cobra.Command {
	var (
		f            runFlags
		variantsFile string
		matrixID     string
		matrixFormat = "text"
		repeat       = 1
		resultsDir   = "results"
	)
	cmd := &cobra.Command{
		Use:   "matrix",
		Short: "Run one workload under several sysctl variants, each isolated, and compare them",
		Long: `matrix runs the same workload once per variant of kernel settings, --repeat times,
interleaved (A B A B, not A A B B, so machine noise spreads over all variants), and
prints the headline figures side by side.

Variants are the cross product of every --sysctl KEY=V1,V2,... and the lines of
--variants FILE. Each line of the file is one variant: an optional NAME: and
KEY=VALUE assignments separated by commas; # starts a comment:

  baseline: net.ipv4.tcp_tw_reuse=2
  reuse:    net.ipv4.tcp_tw_reuse=1, net.ipv4.tcp_tw_reuse_delay=100

Each run is a 'closeload run' with every run flag given here, in a fresh network
namespace (a user namespace too when not root), with the built-in target inside: nothing on the host changes, and no root is needed. Keys the kernel keeps
for the whole host (tcp_mem, tcp_max_orphans) are refused there; --host-sysctl
(root) applies variants to the host instead, journaled and restored after each run.

Records go to RESULTS/MATRIX-ID/vN-rM.json with an index.json listing every run;
each child's output is in vN-rM.log beside its record.`,
		Example: `  closeload matrix --sysctl net.ipv4.tcp_tw_reuse=0,1 --scenario client-halfclose --duration 5s --repeat 2
  closeload matrix --sysctl net.ipv4.tcp_tw_reuse=0,1 --sysctl net.ipv4.tcp_tw_reuse_delay=100,1000 --source 127.0.0.1
  closeload matrix --variants variants.txt --scenario orphan-finwait2 --hold 20s --repeat 3`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fs := cmd.Flags()
			if matrixFormat != "text" && matrixFormat != "json" {
				return usagef("--format %q: accepted: text or json", matrixFormat)
			}
			for _, name := range []string{"out", "run-id"} {
				if fs.Changed(name) {
					return usagef("--%s: matrix names its runs and records itself (%s/MATRIX-ID/vN-rM.json); use --results DIR and --matrix-id ID", name, resultsDir)
				}
			}
			var sweeps []runner.Sweep
			for _, s := range f.sysctls {
				sw, err := runner.ParseSweep(s, f.allowUnknown)
				if err != nil {
					return planError(err)
				}
				sweeps = append(sweeps, sw)
			}
			var fileVariants []runner.Variant
			if variantsFile != "" {
				file, err := os.Open(variantsFile)
				if err != nil {
					return usagef("--variants: %v", err)
				}
				fileVariants, err = runner.ParseVariants(file, variantsFile, f.allowUnknown)
				file.Close()
				if err != nil {
					return planError(err)
				}
			}
			variants, err := runner.ExpandVariants(fileVariants, sweeps)
			if err != nil {
				return planError(err)
			}
			plan, err := f.plan(fs, false)
			if err != nil {
				return err
			}
			args := append([]string{"matrix"}, flagArgs(fs)...)
			progress := cmd.OutOrStdout()
			if matrixFormat == "json" {
				progress = cmd.ErrOrStderr() // standard output holds only the JSON
			}
			plan.Args = args
			o := runner.MatrixOptions{
				ID: matrixID, Dir: resultsDir, Variants: variants, Repeat: repeat,
				Plan: plan, Hlog: plan.Hlog != "", Args: args,
				Stdout: progress, Stderr: cmd.ErrOrStderr(),
				Summary: report.WriteRunSummary,
			}
			idx, recs, err := runner.RunMatrix(cmd.Context(), o)
			if idx != nil && matrixFormat == "json" {
				if c, cerr := report.Compare(recs, report.Options{}); cerr == nil {
					_ = c.WriteJSON(cmd.OutOrStdout())
				}
			} else if idx != nil {
				writeMatrixComparison(cmd, idx, recs)
				fmt.Fprintf(progress, "\nrecords: %s\n", filepath.Join(resultsDir, idx.Matrix))
			}
			if err != nil {
				if perr := planError(err); errors.As(perr, new(usageError)) {
					return perr
				}
				var sig *runner.SignalError
				if errors.As(err, &sig) {
					return exitError{code: 128 + int(sig.Signal), err: err}
				}
			}
			return err
		},
	}
	fs := cmd.Flags()
	addRunFlags(fs, &f)
	if fl := fs.Lookup("sysctl"); fl != nil {
		fl.Usage = "KEY=V1,V2,... values to compare (repeatable: variants are the cross product)"
	}
	fs.StringVar(&matrixFormat, "format", matrixFormat, "the comparison at the end: text or json (the report's JSON rows; progress lines go to standard error)")
	fs.StringVar(&matrixID, "matrix-id", "", "matrix id, the name of its results directory (default: time and pid)")
	for _, name := range []string{"out", "run-id"} {
		_ = fs.MarkHidden(name)
	}
	if fl := fs.Lookup("hlog"); fl != nil {
		fl.Usage = "any value: also write an HdrHistogram interval log per run, beside its record (vN-rM.hlog)"
	}
	fs.StringVar(&variantsFile, "variants", variantsFile, "file of variants, one per line: [NAME:] KEY=VALUE[, KEY=VALUE...]")
	fs.IntVar(&repeat, "repeat", repeat, "runs per variant, interleaved across variants")
	fs.StringVar(&resultsDir, "results", resultsDir, "directory under which the matrix's directory is made")
	fs.SortFlags = false
	return cmd
}

// writeMatrixComparison prints the end-of-matrix comparison; the report
// package's comparison will take its place.
func writeMatrixComparison(cmd *cobra.Command, idx *runner.MatrixIndex, recs []*results.Run) {
	c, err := report.Compare(recs, report.Options{})
	if err == nil {
		fmt.Fprintf(cmd.OutOrStdout(), "\nmatrix %s (%s variants):\n", idx.Matrix, idx.Mode)
		err = c.WriteText(cmd.OutOrStdout())
	}
	if err != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "closeload: matrix comparison: %v\n", err)
	}
}
