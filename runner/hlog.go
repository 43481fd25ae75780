package runner

import (
	"bytes"
	"context"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/results"
	"github.com/closeload/closeload/workload"
)

// hlogRecorder rotates the latency sink every interval and keeps the
// interval histograms for an HdrHistogram interval log (.hlog): an untagged
// histogram of the total phase merged over the mix (what HdrHistogram's
// tools read by default), one tag per phase merged over the mix, plus
// "scenario.phase" tags when the mix has several scenarios.
type hlogRecorder struct {
	sink     *collector.LatencySink
	mix      workload.Mix
	interval time.Duration
	enabled  bool
	mu       sync.Mutex
	entries  []results.HlogInterval
	last     time.Time
	done     chan struct{}
	wg       sync.WaitGroup
}

func newHlogRecorder(sink *collector.LatencySink, mix workload.Mix, interval time.Duration, enabled bool) *hlogRecorder {
	return &hlogRecorder{sink: sink, mix: mix, interval: interval, enabled: enabled, done: make(chan struct{})}
}

func (h *hlogRecorder) start(ctx context.Context) {
	if !h.enabled {
		return
	}
	h.last = time.Now()
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		t := time.NewTicker(h.interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-h.done:
				return
			case <-t.C:
				h.rotate()
			}
		}
	}()
}

func (h *hlogRecorder) rotate() {
	iv := h.sink.Rotate()
	end := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	for p := range collector.NumPhases {
		merged := results.NewHistogram()
		for i := range iv {
			merged.Merge(iv[i][p])
		}
		h.add(merged, collector.PhaseNames[p], h.last, end)
		if collector.PhaseNames[p] == untaggedPhase {
			h.add(merged, "", h.last, end)
		}
		if len(iv) > 1 {
			for i, e := range h.mix.Entries {
				h.add(iv[i][p], e.Scenario.String()+"."+collector.PhaseNames[p], h.last, end)
			}
		}
	}
	h.last = end
}

func (h *hlogRecorder) add(hist *hdrhistogram.Histogram, tag string, start, end time.Time) {
	if hist.TotalCount() == 0 {
		return
	}
	h.entries = append(h.entries, results.HlogInterval{Tag: tag, Start: start, End: end, Histogram: hist})
}

func (h *hlogRecorder) stop() {
	if !h.enabled {
		return
	}
	close(h.done)
	h.wg.Wait()
	h.rotate() // the last, partial interval
}

// untaggedPhase is the phase whose histogram is also written untagged: the
// whole connection, dial start to close returned.
const untaggedPhase = "total"

// write stores the log atomically; histogram values are nanoseconds.
func (h *hlogRecorder) write(path string, base time.Time) error {
	var buf bytes.Buffer
	h.mu.Lock()
	defer h.mu.Unlock()
	comment := "closeload latency log, values in nanoseconds; untagged: the total phase over the mix"
	if err := results.WriteHlog(&buf, base, comment, h.entries); err != nil {
		return err
	}
	return results.WriteOutput(path, buf.Bytes())
}
