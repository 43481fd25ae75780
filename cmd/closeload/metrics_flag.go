package main

import (
	"fmt"

	"github.com/closeload/closeload/metrics"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// metricsListenFlag is the flag every long-running command shares to serve
// its live figures to Prometheus.
const metricsListenFlag = "metrics-listen"

// addMetricsListen adds --metrics-listen to fs, bound to addr.
func addMetricsListen(fs *pflag.FlagSet, addr *string) {
	fs.StringVar(addr, metricsListenFlag, "", "serve Prometheus/OpenMetrics figures at http://`ADDR`/metrics (\":9464\" listens on 127.0.0.1:9464)")
}

// checkMetricsListen validates --metrics-listen before anything starts.
func checkMetricsListen(addr string) error {
	if addr == "" {
		return nil
	}
	if _, err := metrics.ListenAddr(addr); err != nil {
		return usagef("--%s: %v", metricsListenFlag, err)
	}
	return nil
}

// startMetrics serves e on addr when --metrics-listen was given and says
// where on stderr; the returned stop is never nil.
func startMetrics(cmd *cobra.Command, addr string, e *metrics.Exporter) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	s, err := metrics.Listen(addr, e)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", metricsListenFlag, err)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "metrics: %s\n", s.URL())
	return func() { _ = s.Close() }, nil
}
