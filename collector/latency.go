package collector

import (
	"sync"
	"sync/atomic"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/closeload/closeload/results"
)

// Phase names one timed part of a connection.
type Phase int

// The phases of one connection. Their order is the order they happen in.
const (
	PhaseConnect   Phase = iota // dial start → connect() returned
	PhaseFirstByte              // connected → first byte of the peer's data read
	PhaseDrain                  // own FIN sent → peer's EOF read
	PhaseTotal                  // intended start → close() returned
	NumPhases
)

// PhaseNames are the names phases carry in records, reports and hlog tags.
var PhaseNames = [NumPhases]string{"connect", "first_byte", "drain", "total"}

func (p Phase) String() string { return PhaseNames[p] }

// Timings holds one connection's phase durations in nanoseconds; a value <= 0
// means the phase did not happen in this scenario and is not recorded.
type Timings [NumPhases]int64

// recorderBuffer is how many connections a worker keeps before it flushes
// them into the shared histograms: one lock per this many connections keeps
// locks off the per-connection path while bounding memory to one histogram
// set per scenario, whatever the number of workers.
const recorderBuffer = 64

// LatencySink holds the merged histograms of a run: cumulative, and per
// interval since the last Rotate. Workers never touch it
// directly; they record through their own LatencyRecorder.
type LatencySink struct {
	mu       sync.Mutex
	total    [][NumPhases]*hdrhistogram.Histogram
	interval [][NumPhases]*hdrhistogram.Histogram
	// epoch changes at every Rotate so that recorders flush what they
	// buffered before it at their next connection.
	epoch   atomic.Uint64
	dropped int64
}

// NewLatencySink returns a sink for the given number of scenarios.
func NewLatencySink(scenarios int) *LatencySink {
	s := &LatencySink{
		total:    make([][NumPhases]*hdrhistogram.Histogram, scenarios),
		interval: make([][NumPhases]*hdrhistogram.Histogram, scenarios),
	}
	for i := range s.total {
		for p := range NumPhases {
			s.total[i][p] = results.NewHistogram()
			s.interval[i][p] = results.NewHistogram()
		}
	}
	return s
}

// NewRecorder returns a recorder for one worker. It is not safe for
// concurrent use: each worker owns one.
func (s *LatencySink) NewRecorder() *LatencyRecorder {
	return &LatencyRecorder{sink: s, epoch: s.epoch.Load()}
}

// Rotate returns the interval histograms recorded since the previous Rotate
// and starts new ones. A connection lands in the interval in which its
// worker flushed it; workers flush at their first connection after a Rotate.
func (s *LatencySink) Rotate() [][NumPhases]*hdrhistogram.Histogram {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([][NumPhases]*hdrhistogram.Histogram, len(s.interval))
	for i := range s.interval {
		for p := range NumPhases {
			out[i][p] = s.interval[i][p]
			s.interval[i][p] = results.NewHistogram()
		}
	}
	s.epoch.Add(1)
	return out
}

// Totals returns copies of the cumulative histograms, one per scenario and
// phase. Call it after every recorder has flushed.
func (s *LatencySink) Totals() [][NumPhases]*hdrhistogram.Histogram {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([][NumPhases]*hdrhistogram.Histogram, len(s.total))
	for i := range s.total {
		for p := range NumPhases {
			out[i][p] = s.total[i][p].Clone()
		}
	}
	return out
}

// Dropped counts values outside the histogram geometry (over 60 s).
func (s *LatencySink) Dropped() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

type recorded struct {
	scenario int
	t        Timings
}

// LatencyRecorder is one worker's buffer in front of the shared sink.
type LatencyRecorder struct {
	sink  *LatencySink
	epoch uint64
	n     int
	buf   [recorderBuffer]recorded
}

// Record keeps one connection's timings. It takes no lock and allocates
// nothing; every recorderBuffer connections, or after a Rotate, it flushes
// into the sink under one lock. Warm-up connections are never recorded: the
// worker leaves them out (workload decides by completion time).
func (r *LatencyRecorder) Record(scenario int, t *Timings) {
	if e := r.sink.epoch.Load(); e != r.epoch {
		r.flush()
		r.epoch = e
	}
	r.buf[r.n] = recorded{scenario, *t}
	r.n++
	if r.n == recorderBuffer {
		r.flush()
	}
}

// Flush moves what the recorder buffers into the sink; workers call it when
// they stop.
func (r *LatencyRecorder) Flush() {
	r.flush()
	r.epoch = r.sink.epoch.Load()
}

func (r *LatencyRecorder) flush() {
	if r.n == 0 {
		return
	}
	s := r.sink
	s.mu.Lock()
	for i := 0; i < r.n; i++ {
		e := &r.buf[i]
		for p := range NumPhases {
			v := e.t[p]
			if v <= 0 {
				continue
			}
			if v > results.HistogramHighest || s.total[e.scenario][p].RecordValue(v) != nil {
				s.dropped++
				continue
			}
			_ = s.interval[e.scenario][p].RecordValue(v)
		}
	}
	s.mu.Unlock()
	r.n = 0
}
