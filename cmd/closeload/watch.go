package main

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/metrics"
	"github.com/closeload/closeload/report"
	"github.com/closeload/closeload/runner"
	"github.com/spf13/cobra"
)

// newWatchCmd is `closeload watch`: a live per-state, per-port view of TCP
// sockets and close counters, for any server on the machine.
func newWatchCmd() *cobra.Command {
	var (
		ports     []int
		interval  time.Duration
		source    string
		procRoot  string
		count     int
		metricsAt string
		format    string
	)
	c := &cobra.Command{
		Use:   "watch",
		Short: "Live per-state, per-port view of TCP sockets and close counters",
		Long: `watch shows, every interval, how many TCP sockets sit in each state (LISTEN,
SYN_RECV, ESTABLISHED, FIN_WAIT1, FIN_WAIT2 with its orphans, CLOSING, TIME_WAIT,
CLOSE_WAIT, LAST_ACK) for each port, and the close-related kernel counters per second
(TW, TWRecycled, TCPAbortOn*, ListenOverflows, OutRsts, ...). A socket belongs to a
port's row when its local or remote port is that port. Without --port, every
listening port gets a row. On a terminal the view refreshes in place; otherwise
one line is printed per interval. Ctrl-C ends it.`,
		Example: `  closeload watch --port 8080
  closeload watch --port 80 --port 443 --interval 200ms
  closeload watch --count 10 > states.log`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ps, err := collector.ValidatePorts("--port", ports)
			if err != nil {
				return usagef("%v (accepted: 1-65535, repeatable)", err)
			}
			if _, err := collector.ValidateInterval(interval); err != nil || interval == 0 {
				return usagef("--interval %v: accepted: a duration of at least %v, e.g. 1s, 250ms", interval, collector.MinInterval)
			}
			if err := collector.ValidateSource(source); err != nil {
				return usagef("--collector-source: %v", err)
			}
			if format != "text" && format != "json" {
				return usagef("--format %q: accepted: text or json", format)
			}
			if count < 0 {
				return usagef("--count %d: accepted: 0 (until Ctrl-C) or more", count)
			}
			if err := checkMetricsListen(metricsAt); err != nil {
				return err
			}
			w, err := collector.NewWatcher(collector.WatchConfig{ProcRoot: procRoot, Source: source, Ports: ps})
			if err != nil {
				return err
			}
			defer w.Close()
			var latest watchLatest
			if metricsAt != "" {
				stop, err := startMetrics(cmd, metricsAt, latest.exporter(procRoot))
				if err != nil {
					return err
				}
				defer stop()
			}
			out := cmd.OutOrStdout()
			tty := runner.IsTerminal(out)
			ctx := cmd.Context()
			t := time.NewTicker(interval)
			defer t.Stop()
			for n := 0; count == 0 || n < count; n++ {
				if n > 0 {
					select {
					case <-ctx.Done():
						return nil
					case <-t.C:
					}
				}
				f := w.Step()
				latest.set(f)
				for _, note := range w.Notes() {
					fmt.Fprintf(cmd.ErrOrStderr(), "closeload watch: %s\n", note)
				}
				switch {
				case format == "json":
					if err := report.WriteWatchJSON(out, f.Data()); err != nil {
						return err
					}
				case tty:
					io.WriteString(out, "\x1b[H\x1b[2J")
					report.WriteWatchTable(out, f.Data())
				default:
					report.WriteWatchLine(out, f.Data())
				}
			}
			return nil
		},
	}
	c.Flags().IntSliceVar(&ports, "port", nil, "show sockets whose local or remote port is `P` (repeatable; default: every listening port)")
	c.Flags().DurationVar(&interval, "interval", time.Second, "refresh every `D` (minimum 10ms)")
	c.Flags().StringVar(&source, "collector-source", collector.SourceAuto, "where socket states come from: auto, ebpf, netlink or proc")
	c.Flags().IntVar(&count, "count", 0, "stop after `N` refreshes (0: until Ctrl-C)")
	c.Flags().StringVar(&format, "format", "text", "output: text (a table on a terminal, a line per refresh otherwise) or json (one JSON object per refresh, JSON Lines)")
	c.Flags().StringVar(&procRoot, "proc-root", collector.DefaultProcRoot, "procfs root (for tests)")
	_ = c.Flags().MarkHidden("proc-root")
	addMetricsListen(c.Flags(), &metricsAt)
	return c
}

// watchLatest keeps the last frame for the metrics endpoint: the watch loop
// sets it once per interval, a scrape reads it.
type watchLatest struct {
	mu sync.Mutex
	f  collector.WatchFrame
}

func (l *watchLatest) set(f collector.WatchFrame) {
	l.mu.Lock()
	l.f = f
	l.mu.Unlock()
}

// exporter serves the last frame's socket states per port and the kernel
// counters as they are at the scrape.
func (l *watchLatest) exporter(procRoot string) *metrics.Exporter {
	e := metrics.New(runner.NewRunID())
	e.SetProvider(func() metrics.Live {
		l.mu.Lock()
		live := metrics.FromWatch(l.f)
		l.mu.Unlock()
		live.Counters, _ = collector.ReadCounters(procRoot)
		return live
	})
	return e
}
