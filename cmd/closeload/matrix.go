package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/closeload/closeload/report"
	"github.com/closeload/closeload/results"
	"github.com/closeload/closeload/runner"
	"github.com/spf13/cobra"
)

// matrixOwnFlags are flags the matrix sets for each run itself, or that
// belong to the matrix; they are not passed through to the runs.
var matrixOwnFlags = map[string]bool{
	"sysctl": true, "out": true, "run-id": true, "matrix-id": true, "variant": true,
	"repeat-index": true, "hlog": true, "variants": true, "repeat": true, "results": true,
}

func newMatrixCmd() *cobra.Command {
	spec := runner.DefaultSpec()
	var (
		variantsFile string
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

Each run is a 'closeload run' child with every run flag given here, in a fresh
network namespace (a user namespace too when not root), with the built-in target
inside: nothing on the host changes, and no root is needed. Keys the kernel keeps
for the whole host (tcp_mem, tcp_max_orphans) are refused there; --host-sysctl
(root) applies variants to the host instead, journaled and restored after each run.

Records go to RESULTS/MATRIX-ID/vN-rM.json with an index.json listing every run;
each child's output is in vN-rM.log beside its record.`,
		Example: `  closeload matrix --sysctl net.ipv4.tcp_tw_reuse=0,1 --scenario client-halfclose --duration 5s --repeat 2
  closeload matrix --sysctl net.ipv4.tcp_tw_reuse=0,1 --sysctl net.ipv4.tcp_tw_reuse_delay=100,1000 --source 127.0.0.1
  closeload matrix --variants variants.txt --scenario orphan-finwait2 --hold 20s --repeat 3`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fs := cmd.Flags()
			for _, name := range []string{"out", "run-id", "variant", "repeat-index"} {
				if fs.Changed(name) {
					return usagef("--%s: matrix names its runs and records itself (%s/MATRIX-ID/vN-rM.json); use --results DIR and --matrix-id ID", name, resultsDir)
				}
			}
			var sweeps []runner.Sweep
			for _, s := range spec.Sysctls {
				sw, err := runner.ParseSweep(s, spec.AllowUnknown)
				if err != nil {
					return asUsage(err)
				}
				sweeps = append(sweeps, sw)
			}
			var fileVariants []runner.Variant
			if variantsFile != "" {
				f, err := os.Open(variantsFile)
				if err != nil {
					return usagef("--variants: %v", err)
				}
				fileVariants, err = runner.ParseVariants(f, variantsFile, spec.AllowUnknown)
				f.Close()
				if err != nil {
					return asUsage(err)
				}
			}
			variants, err := runner.ExpandVariants(fileVariants, sweeps)
			if err != nil {
				return asUsage(err)
			}
			// Every run flag is checked once here, before any run starts.
			check := spec
			check.Sysctls, check.RunID = nil, "matrix-check"
			check.Out = filepath.Join(resultsDir, "matrix-check.json")
			if _, err := check.Validate(); err != nil {
				return asUsage(err)
			}
			var runArgs []string
			for _, a := range flagArgs(fs) {
				name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
				if !matrixOwnFlags[name] {
					runArgs = append(runArgs, a)
				}
			}
			o := runner.MatrixOptions{
				ID: spec.Matrix, Dir: resultsDir, Variants: variants, Repeat: repeat,
				Host: spec.HostSysctl, Target: spec.Target, AllowUnknown: spec.AllowUnknown,
				RunArgs: runArgs, Hlog: spec.Hlog != "",
				Args:   append([]string{"matrix"}, flagArgs(fs)...),
				Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr(),
			}
			idx, recs, err := runner.RunMatrix(cmd.Context(), o)
			if idx != nil {
				writeMatrixComparison(cmd, idx, recs)
				fmt.Fprintf(cmd.OutOrStdout(), "\nrecords: %s\n", filepath.Join(resultsDir, idx.Matrix))
			}
			if errors.Is(err, runner.ErrUsage) {
				return asUsage(err)
			}
			return err
		},
	}
	fs := cmd.Flags()
	addRunFlags(fs, &spec)
	if f := fs.Lookup("sysctl"); f != nil {
		f.Usage = "KEY=V1,V2,... values to compare (repeatable: variants are the cross product)"
	}
	if f := fs.Lookup("matrix-id"); f != nil {
		f.Hidden = false
		f.Usage = "matrix id, the name of its results directory (default: time and pid)"
	}
	for _, name := range []string{"out", "run-id"} {
		_ = fs.MarkHidden(name)
	}
	if f := fs.Lookup("hlog"); f != nil {
		f.Usage = "any value: also write an HdrHistogram interval log per run, beside its record (vN-rM.hlog)"
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
