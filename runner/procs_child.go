package runner

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/closeload/closeload/collector"
)

// The processes of `run --procs P` talk to their parent over two pipes:
// the child writes JSON lines to descriptor 3 (listening, opened, its live
// counts every sampling interval), the parent writes "start NS" and
// "close NS" lines (Unix nanoseconds) to the child's standard input. The
// parent thus starts every shard's dialing once all their listeners share
// the port, and closes every shard's storm at one time once all of them
// have opened their connections. Sockets are counted once, by the parent:
// the shards share one network namespace and one port, so each would
// count them all.

// procsChildEnv is "1" in the environment of a child of --procs.
const procsChildEnv = "CLOSELOAD_PROCS_CHILD"

// statusFD is the child's end of the status pipe.
const statusFD = 3

// childStatus is one line from a child.
type childStatus struct {
	Event    string `json:"ev"` // listening, opened, status
	Cycles   uint64 `json:"cycles,omitempty"`
	Errors   uint64 `json:"errors,omitempty"`
	Attempts uint64 `json:"attempts,omitempty"`
	Held     uint64 `json:"held,omitempty"`
	Opened   uint64 `json:"opened,omitempty"`
}

// errSampledByParent stands for the sampler of a --procs child.
var errSampledByParent = errors.New("socket states and counters are sampled once by the --procs parent")

// errParentGone is returned when a child's parent closed its control pipe.
var errParentGone = errors.New("--procs parent went away")

// procsChild is this process's link to its --procs parent.
type procsChild struct {
	mu     sync.Mutex
	status *os.File
	lines  chan string
}

var (
	procsChildOnce sync.Once
	procsChildLink *procsChild
)

// procsChildLinkFromEnv returns the link to the parent when this process
// is a child of --procs, else nil.
func procsChildLinkFromEnv() *procsChild {
	procsChildOnce.Do(func() {
		if os.Getenv(procsChildEnv) != "1" {
			return
		}
		c := &procsChild{status: os.NewFile(statusFD, "closeload-status"), lines: make(chan string, 4)}
		go func() {
			defer close(c.lines)
			sc := bufio.NewScanner(os.Stdin)
			for sc.Scan() {
				c.lines <- sc.Text()
			}
		}()
		procsChildLink = c
	})
	return procsChildLink
}

func (c *procsChild) send(st childStatus) {
	b, _ := json.Marshal(st)
	c.mu.Lock()
	defer c.mu.Unlock()
	_, _ = c.status.Write(append(b, '\n'))
}

// wait returns the time of the parent's next "verb NS" line.
func (c *procsChild) wait(ctx context.Context, verb string) (time.Time, error) {
	for {
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case line, ok := <-c.lines:
			if !ok {
				return time.Time{}, errParentGone
			}
			v, ns, _ := strings.Cut(line, " ")
			if v != verb {
				continue
			}
			n, err := strconv.ParseInt(ns, 10, 64)
			if err != nil {
				return time.Time{}, fmt.Errorf("--procs parent said %q", line)
			}
			return time.Unix(0, n), nil
		}
	}
}

// report sends the workload's counts every interval until ctx ends, and
// once more at the end.
func (c *procsChild) report(ctx context.Context, interval time.Duration, w func() collector.WorkloadCounts) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(max(interval/2, 10*time.Millisecond))
		defer t.Stop()
		for {
			wc := w()
			c.send(childStatus{Event: "status", Cycles: wc.Cycles, Errors: wc.Errors, Attempts: wc.Attempts, Held: wc.Held})
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		cancel()
		<-done
		wc := w()
		c.send(childStatus{Event: "status", Cycles: wc.Cycles, Errors: wc.Errors, Attempts: wc.Attempts, Held: wc.Held})
	}
}

// newRunSampler is collector.NewSampler, except in a child of --procs:
// there the parent samples the shared namespace once and the child only
// reports its workload's counts, until ctx ends.
func newRunSampler(ctx context.Context, cfg collector.SamplerConfig) (*collector.Sampler, error) {
	c := procsChildLinkFromEnv()
	if c == nil {
		return collector.NewSampler(cfg)
	}
	if cfg.Workload != nil {
		stop := c.report(ctx, cfg.Interval, cfg.Workload)
		context.AfterFunc(ctx, stop)
	}
	return nil, errSampledByParent
}
