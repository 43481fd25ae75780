package main

import (
	"errors"
	"fmt"

	"github.com/closeload/closeload/runner"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// addRunFlags defines every flag of `closeload run`; `closeload matrix`
// uses the same set so that every run flag applies to each of its runs.
func addRunFlags(fs *pflag.FlagSet, s *runner.Spec) {
	fs.StringVarP(&s.Scenario, "scenario", "s", s.Scenario, "scenario mix NAME[:WEIGHT],... (see 'closeload scenarios')")
	fs.StringVar(&s.Target, "target", s.Target, "external target HOST:PORT; only client halves run (default: the built-in target)")
	fs.StringVar(&s.Listen, "listen", s.Listen, "built-in target's first listening address; one port per scenario")
	fs.IntVarP(&s.Conns, "conns", "c", s.Conns, "workers: connections in flight (closed loop) or at most in flight (open loop)")
	fs.Float64VarP(&s.Rate, "rate", "r", s.Rate, "open loop: connections per second (0 = closed loop)")
	fs.StringVar(&s.Arrival, "arrival", s.Arrival, "open-loop arrivals: constant or poisson")
	fs.DurationVarP(&s.Duration, "duration", "d", s.Duration, "how long to measure, after the warm-up (0 = until --cycles)")
	fs.Uint64Var(&s.Cycles, "cycles", s.Cycles, "stop after this many connections (0 = until --duration)")
	fs.DurationVar(&s.Warmup, "warmup", s.Warmup, "run this long first and leave it out of every figure")
	fs.StringVar(&s.Source, "source", s.Source, "source addresses: ADDR, FIRST-LAST or PREFIX/LEN, comma-separated (default: 254 of 127.0.0.0/8 for a loopback target)")
	fs.IntVar(&s.RequestSize, "request-size", s.RequestSize, "request bytes (stream-echo: bytes streamed)")
	fs.IntVar(&s.ResponseSize, "response-size", s.ResponseSize, "response bytes: what the built-in target sends; from --target, read exactly this many (default -1: 16 from the built-in target, read to EOF from --target)")
	fs.DurationVar(&s.Hold, "hold", s.Hold, "how long hold scenarios keep connections (orphan-finwait2, close-wait-leak)")
	fs.DurationVar(&s.Timeout, "timeout", s.Timeout, "bound on every connect and read")
	fs.DurationVar(&s.Grace, "grace", s.Grace, "after a stop, how long connections in flight may take to finish")
	fs.StringVar(&s.Request, "request", s.Request, "request bytes for external targets: http (GET with Connection: close) or @FILE")
	fs.StringVarP(&s.Out, "out", "o", s.Out, "record file (default results/RUN-ID.json)")
	fs.StringVar(&s.RunID, "run-id", s.RunID, "run id (default: time and pid)")
	fs.StringVar(&s.Hlog, "hlog", s.Hlog, "also write an HdrHistogram interval log to this file")
	fs.DurationVar(&s.Interval, "interval", s.Interval, "sampling interval of socket states and counters (min 10ms)")
	fs.StringVar(&s.CollectorSource, "collector-source", s.CollectorSource, "socket-state source: auto, netlink or proc")
	fs.StringArrayVar(&s.Sysctls, "sysctl", s.Sysctls, "KEY=VALUE to set for this run (repeatable); runs isolated in a fresh network namespace unless --host-sysctl")
	fs.BoolVar(&s.HostSysctl, "host-sysctl", s.HostSysctl, "apply --sysctl to the host (root; journaled and restored) instead of isolating")
	fs.BoolVar(&s.Isolate, "isolate", s.Isolate, "run in a fresh network namespace (as --sysctl does) even without --sysctl")
	fs.BoolVar(&s.AllowUnknown, "allow-unknown-sysctl", s.AllowUnknown, "accept well-formed net.* keys the registry does not know")
	fs.StringVar(&s.Journal, "sysctl-journal", s.Journal, "host mode: where to journal old values (default OUT.sysctl-journal)")
	fs.StringVar(&s.Shard, "shard", s.Shard, "run shard INDEX/COUNT of a run spread over processes or hosts: an exact slice of --conns, --rate and --cycles")
	fs.StringVar(&s.StartAt, "start-at", s.StartAt, "wait until this RFC 3339 time before starting the load (the same on every shard)")
	fs.IntVar(&s.Acceptors, "acceptors", s.Acceptors, "built-in target threads per scenario (default: conns, at most 256)")
	addStormFlags(fs, &s.StormSpec)
	fs.StringVar(&s.Matrix, "matrix-id", s.Matrix, "matrix this run belongs to (set by closeload matrix)")
	fs.StringVar(&s.Variant, "variant", s.Variant, "variant label (set by closeload matrix)")
	fs.IntVar(&s.Repeat, "repeat-index", s.Repeat, "repeat number within the matrix (set by closeload matrix)")
	for _, hidden := range []string{"matrix-id", "variant", "repeat-index"} {
		_ = fs.MarkHidden(hidden)
	}
}

func newRunCmd() *cobra.Command {
	spec := runner.DefaultSpec()
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Open and close connections in a scenario mix and record what happened",
		Long: `run starts the built-in target on loopback (or uses --target), opens and closes
connections in the scenario mix for --duration, samples socket states and kernel
counters, prints a summary and writes the run record.`,
		Example: `  closeload run
  closeload run --scenario client-halfclose --conns 8 --duration 5s
  closeload run --scenario client-halfclose:70,linger0:30 --rate 20000 --arrival poisson
  closeload run --sysctl net.ipv4.tcp_fin_timeout=5 --scenario orphan-finwait2 --hold 10s
  closeload run --target 127.0.0.1:8080 --request http --scenario full-close
  closeload run --storm 5000 --hold 10s --storm-window 1s --closer server
  closeload run --isolate --storm 250000 --procs auto --hold 30s --scenario close-wait-leak`,
		RunE: func(cmd *cobra.Command, args []string) error {
			spec.Args = append([]string{"run"}, flagArgs(cmd.Flags())...)
			plan, err := spec.Validate()
			if err != nil {
				return asUsage(err)
			}
			rec, err := runner.Run(cmd.Context(), plan, runner.Output{Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr(), Progress: true})
			if errors.Is(err, runner.ErrUsage) {
				return asUsage(err)
			}
			if rec != nil && !isIsolatedParent(plan) {
				runner.WriteSummary(cmd.OutOrStdout(), rec)
				runner.WriteStormSummary(cmd.OutOrStdout(), rec)
				runner.WriteKernelSummary(cmd.OutOrStdout(), rec)
				fmt.Fprintf(cmd.OutOrStdout(), "\nrecord: %s\n", plan.Out)
			}
			return err
		},
	}
	addRunFlags(cmd.Flags(), &spec)
	cmd.Flags().SortFlags = false
	return cmd
}

// isIsolatedParent is true when the run happened in a child that already
// printed its summary.
func isIsolatedParent(p *runner.Plan) bool { return runner.RunsIsolated(p) }

// flagArgs returns the flags the user set, as arguments, so that a record
// says how to reproduce it and an isolated child gets the same run.
func flagArgs(fs *pflag.FlagSet) []string {
	var out []string
	fs.Visit(func(f *pflag.Flag) {
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			for _, v := range sv.GetSlice() {
				out = append(out, "--"+f.Name+"="+v)
			}
			return
		}
		out = append(out, "--"+f.Name+"="+f.Value.String())
	})
	return out
}
