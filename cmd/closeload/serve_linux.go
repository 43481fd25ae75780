package main

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/metrics"
	"github.com/closeload/closeload/report"
	"github.com/closeload/closeload/runner"
	"github.com/closeload/closeload/workload"
	"github.com/spf13/cobra"
)

func newServeCmd() *cobra.Command {
	var (
		listen    = "127.0.0.1:9000"
		scenarios = "client-halfclose"
		acceptors = 8
		reqSize   = 16
		respSize  = 16
		hold      = time.Second
		timeout   = 30 * time.Second
		reusePort bool
		duration  time.Duration
		metricsAt string
		format    = "text"
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the built-in target alone, for another tool or host to drive",
		Long: `serve plays the target half of the scenarios: one listening port per scenario,
starting at --listen and counting up. It runs until Ctrl-C (or --duration) and then
prints what it served.`,
		Example: `  closeload serve --listen 127.0.0.1:9000 --scenario server-halfclose
  closeload serve --listen 0.0.0.0:9000 --scenario client-halfclose,linger0,stream-echo`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ap, err := netip.ParseAddrPort(listen)
			if err != nil {
				return usagef("--listen %q: want IP:PORT such as 127.0.0.1:9000", listen)
			}
			var ss []workload.Scenario
			for _, name := range strings.Split(scenarios, ",") {
				s, err := workload.ParseScenario(strings.TrimSpace(name))
				if err != nil {
					return usagef("--scenario: %v", err)
				}
				ss = append(ss, s)
			}
			if acceptors < 1 || acceptors > 4096 {
				return usagef("--acceptors %d: want 1 to 4096", acceptors)
			}
			if reqSize < 0 || respSize < 0 {
				return usagef("--request-size and --response-size: want 0 or more bytes")
			}
			if hold < 0 || timeout <= 0 || duration < 0 {
				return usagef("--hold, --timeout, --duration: want positive durations")
			}
			if format != "text" && format != "json" {
				return usagef("--format %q: accepted: text or json", format)
			}
			if err := checkMetricsListen(metricsAt); err != nil {
				return err
			}
			t, err := workload.StartTarget(workload.TargetConfig{
				Listen: ap, Scenarios: ss, Acceptors: acceptors, RequestSize: reqSize,
				ResponseSize: respSize, Hold: hold, Timeout: timeout, ReusePort: reusePort,
			})
			if err != nil {
				return err
			}
			defer t.Close()
			// With --format json standard output holds only the summary.
			say := cmd.OutOrStdout()
			if format == "json" {
				say = cmd.ErrOrStderr()
			}
			for i, a := range t.Addrs() {
				fmt.Fprintf(say, "serving %s on %s\n", ss[i], a)
			}
			if metricsAt != "" {
				e, closeCensus := serveMetrics(t, ss, cmd.ErrOrStderr())
				defer closeCensus()
				stop, err := startMetrics(cmd, metricsAt, e)
				if err != nil {
					return err
				}
				defer stop()
			}
			var stop <-chan time.Time
			if duration > 0 {
				stop = time.After(duration)
			}
			select {
			case <-cmd.Context().Done():
			case <-stop:
			}
			t.Close()
			var served []report.ServeScenario
			for i, s := range ss {
				c := t.Counts(s)
				sc := report.ServeScenario{Scenario: s.String(), Listen: t.Addrs()[i].String(), Accepted: c.Attempts, Completed: c.Cycles,
					Unfinished: workload.UnfinishedMap(c.Unfinished), ResetsSeen: c.Reset}
				for k, n := range c.Errors {
					if n > 0 {
						if sc.Errors == nil {
							sc.Errors = map[string]uint64{}
						}
						sc.Errors[workload.ErrorClass(k).String()] = n
					}
				}
				served = append(served, sc)
			}
			if format == "json" {
				return report.WriteServeSummaryJSON(cmd.OutOrStdout(), served)
			}
			report.WriteServeSummary(cmd.OutOrStdout(), served)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", listen, "first listening address; scenario k listens on port+k")
	f.StringVarP(&scenarios, "scenario", "s", scenarios, "target halves to play, comma-separated")
	f.IntVar(&acceptors, "acceptors", acceptors, "threads accepting and serving per scenario")
	f.IntVar(&reqSize, "request-size", reqSize, "request bytes to expect (full-close, linger0, unread-close)")
	f.IntVar(&respSize, "response-size", respSize, "response bytes to send")
	f.DurationVar(&hold, "hold", hold, "how long hold scenarios keep connections")
	f.DurationVar(&timeout, "timeout", timeout, "bound on every read and write of a connection")
	f.BoolVar(&reusePort, "reuseport", reusePort, "SO_REUSEPORT, so several serve processes share the ports")
	f.DurationVar(&duration, "duration", duration, "stop after this long (0 = until Ctrl-C)")
	addMetricsListen(f, &metricsAt)
	f.StringVar(&format, "format", format, "summary at the end: text or json")
	return cmd
}

// serveMetrics is the exporter of `closeload serve`: the target's counts per
// scenario, the states of sockets on its ports (its own and those of any
// local client) and the kernel counters, read at each scrape.
func serveMetrics(t *workload.Target, ss []workload.Scenario, notes io.Writer) (*metrics.Exporter, func()) {
	e := metrics.New(runner.NewRunID())
	var ports []uint16
	for _, a := range t.Addrs() {
		ports = append(ports, a.Port())
	}
	census, err := metrics.OpenCensus(collector.StateQuery{Ports: ports})
	if err != nil {
		fmt.Fprintf(notes, "metrics: socket states not served: %v\n", err)
		census = nil
	}
	e.SetProvider(func() metrics.Live {
		var l metrics.Live
		for _, s := range ss {
			l.Scenarios = append(l.Scenarios, metrics.FromCounts(s.String(), metrics.SideTarget, t.Counts(s)))
		}
		if census != nil {
			_ = census.Fill(&l, metrics.SideAll)
		}
		l.Counters, _ = collector.ReadCounters("")
		return l
	})
	return e, func() {
		if census != nil {
			census.Close()
		}
	}
}
