// Package metrics serves a run's live figures to Prometheus: connections by
// outcome, errors by class, bytes, connections in flight, socket states by
// side, kernel events and counters, and phase latencies as histograms.
//
// Nothing here touches the workload's hot path. The caller hands the
// Exporter a Provider; at every scrape the Exporter calls it once, and the
// Provider reads the atomics the workers already keep and the cumulative
// HdrHistograms of the latency sink. Between scrapes the package costs
// nothing.
package metrics
