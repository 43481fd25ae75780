package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/closeload/closeload/report"
	"github.com/closeload/closeload/results"
	"github.com/closeload/closeload/runner"
	"github.com/spf13/cobra"
)

func newRunCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Open and close connections in a scenario mix and record what happened",
		Long: `run starts the built-in target (or uses --target), opens and closes connections in
the scenario mix for --duration, samples socket states and kernel counters, prints a
summary ending in a verdict and writes the run record.

With the built-in target a run happens in a fresh network namespace of its own (a
user namespace too when not root): it starts from a clean slate and leaves nothing
on the host. Where namespaces are not permitted it runs in the host's namespace and
says so; --host-netns asks for that.

Exit status: 0 the run did its work and every --threshold held; 1 the run failed
(nothing completed, the target refused or vanished, a fault stopped it, a shard
failed, the record could not be written); 2 a usage error; 3 a threshold failed;
130 or 143 interrupted by SIGINT or SIGTERM (the record is written, marked).

Thresholds (--threshold, repeatable) are METRIC OP VALUE with OP one of < <= > >=
== !=: errors (per attempt, e.g. errors<0.1%), rate (completed per second),
PHASE.PCT (phases connect, first_byte, drain, total; PCT p50 p90 p99 p999 p9999
min max mean; e.g. total.p99<5ms), peak.STATE (e.g. peak.CLOSE_WAIT<100),
unfinished, cycles, attempts; prefix a scenario for its own figure
(client-halfclose.total.p99<2ms).`,
		Example: `  closeload run
  closeload run --scenario client-halfclose --conns 8 --duration 5s
  closeload run --scenario client-halfclose:70,linger0:30 --rate 20000 --arrival poisson
  closeload run --sysctl net.ipv4.tcp_fin_timeout=5 --scenario orphan-finwait2 --hold 10s
  closeload run --target 127.0.0.1:8080 --request http --scenario full-close
  closeload run --threshold 'errors<0.1%' --threshold 'total.p99<5ms' --format json
  closeload run --storm 5000 --hold 10s --storm-window 1s --closer server
  closeload run --storm 250000 --procs auto --hold 30s --scenario close-wait-leak`,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := f.plan(cmd.Flags(), true)
			if err != nil {
				return err
			}
			p.Args = append([]string{"run"}, flagArgs(cmd.Flags())...)
			if p.RunID == "" {
				p.RunID = runner.NewRunID()
			}
			if p.Out == "" {
				p.Out = filepath.Join("results", p.RunID+".json")
			}
			stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
			summary := stdout
			if p.Out == "-" {
				summary = stderr // the record itself goes to standard output
			}
			rec, err := runner.Run(cmd.Context(), &p, runner.Output{Stdout: stdout, Stderr: stderr, Progress: true, Abort: abortOf(cmd)})
			if rec != nil {
				printSummary(summary, rec, p.Out, f.format)
			}
			return runResult(rec, err)
		},
	}
	addRunFlags(cmd.Flags(), &f)
	cmd.Flags().StringVar(&f.format, "format", f.format, "summary format: "+strings.Join(summaryFormats, " or ")+" (json: the verdict, thresholds and headline figures, for scripts)")
	cmd.Flags().SortFlags = false
	return cmd
}

// printSummary prints the run's summary in the asked format.
func printSummary(w io.Writer, rec *results.Run, out, format string) {
	if format == "json" {
		_ = report.WriteRunSummaryJSON(w, rec, out)
		return
	}
	report.WriteRunSummary(w, rec)
	if out != "-" {
		fmt.Fprintf(w, "\nrecord: %s\n", out)
	}
}

// runResult turns a run's outcome into the command's error: usage errors
// name their flags, everything else carries the run's exit status.
func runResult(rec *results.Run, err error) error {
	if perr := planError(err); perr != nil {
		if _, ok := perr.(usageError); ok {
			return perr
		}
	}
	code := runner.ExitCode(rec, err)
	if code == 0 {
		return nil
	}
	return exitError{code: code, err: err}
}
