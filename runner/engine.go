package runner

import (
	"context"
	"io"
	"time"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/results"
)

// Output is where a run writes for the user.
type Output struct {
	Stdout io.Writer
	Stderr io.Writer
	// Progress enables the live line on Stderr (when it is a terminal).
	Progress bool
	// Abort, when it closes, stops the run at once: connections still in
	// flight are shut down without waiting for the grace period (a second
	// Ctrl-C). The record is still written.
	Abort <-chan struct{}
}

// engine is what makes a run's load; the pipeline does the rest (sysctls,
// the start time, the sampler, progress, interrupts, the record). There are
// three: the loop (a pool of workers against the built-in target or an
// external one), the storm, and the supervisor of several processes.
type engine interface {
	// start opens what the load needs before the clock starts: the
	// built-in target, the workers, the children.
	start(ctx context.Context) error
	// probe makes one connection to the target, so one that is not there
	// is reported at once, as itself.
	probe() error
	// ports are the target's ports, whose sockets are the run's.
	ports() []uint16
	// samplerCPU is the share of a core the state counts may use (0: the
	// collector's default, negative: no limit).
	samplerCPU() float64
	// run makes the load until it ends, ctx ends (stop, with the grace
	// period) or abort closes (stop at once).
	run(ctx context.Context, abort <-chan struct{}) error
	// live is the workload's progress, read by the sampler and the live
	// line while run goes on.
	live() collector.WorkloadCounts
	// line is the live line's text.
	line(elapsed time.Duration) string
	// fill puts what the load measured into the record.
	fill(rec *results.Run) error
	// close releases what start opened; it may be called more than once.
	close()
}
