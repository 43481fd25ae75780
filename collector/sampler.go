package collector

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/closeload/closeload/results"
)

// Sampling interval bounds: below 10 ms a sample of many sockets would cost
// more than the interval it describes.
const (
	DefaultInterval = time.Second
	MinInterval     = 10 * time.Millisecond
)

// ErrInterval marks an --interval below MinInterval.
var ErrInterval = errors.New("interval below the minimum of 10ms")

// maxErrors bounds the distinct error messages kept in CollectorHealth.
const maxErrors = 10

// SamplerConfig configures a Sampler.
type SamplerConfig struct {
	// ProcRoot is the procfs root (default "/proc").
	ProcRoot string
	// Source is "auto" (netlink, falling back to proc), "netlink" or "proc".
	Source string
	// Interval between samples: default 1s, minimum 10ms.
	Interval time.Duration
	// Ports selects sockets whose local or remote port is one of them;
	// empty counts every TCP socket.
	Ports []uint16
	// Workload returns the workload's cumulative counts; may be nil.
	Workload func() WorkloadCounts
	// OnSample, when set, is called after each sample (live display), from
	// the sampler's goroutine.
	OnSample func(results.Sample)
	// NetnsPath counts sockets in another network namespace (see
	// StateQuery.NetnsPath); empty for the caller's own.
	NetnsPath string
	// MaxCPU is the share of one core the state counts may use (default
	// DefaultMaxCPU). When one count costs more than MaxCPU × Interval,
	// states are counted only every few intervals, so the sampler never
	// competes with the workload it measures; counters are read every
	// interval regardless. Negative: no limit.
	MaxCPU float64
	// TargetPorts split the socket states of every sample and of the peaks
	// into the client side and the target side (see results.Sample.Sides).
	TargetPorts []uint16
	// Tracer, when set and Source is "auto" or "ebpf", opens the eBPF
	// tracer for these targets: the states of every sample then come from
	// its census (a fixed cost whatever the number of sockets; full sockets
	// only), TIME_WAIT from the state source within MaxCPU (a sample that
	// skips it lists "TIME_WAIT" in Missing), and SamplerResult.Events
	// holds the tracer's counts. With
	// "auto" a tracer that cannot open falls back to sock_diag or /proc and
	// CollectorHealth.TracerReason says why; with "ebpf" it is an error.
	Tracer *TracerConfig
}

// DefaultMaxCPU is the default budget of the state counts: 3% of one core.
// Reading the counters costs about 1.5% more at 10 Hz, so a whole sample
// stays under 5% of a core (BenchmarkCollectorSampler10Hz). A sock_diag count walks
// every socket of the hash table (about 80-320 ns each here), so 100k
// sockets at 10 Hz would otherwise take 10-30% of a core.
const DefaultMaxCPU = 0.03

// WorkloadCounts are the workload's cumulative totals; the Sampler turns
// them into per-interval figures (Held is a level, kept as is).
type WorkloadCounts struct{ Cycles, Errors, Attempts, Held uint64 }

// SamplerResult is everything a Sampler measured.
type SamplerResult struct {
	Series []results.Sample
	// Counters holds whole-run deltas of every counter read, sorted by
	// name, with their scope (netns or global). They run from the baseline
	// to the last successful read; nil when no read succeeded.
	Counters []results.CounterDelta
	// Peaks holds, per state, the highest total and the highest orphan
	// count seen in any sample (each maximum on its own).
	Peaks map[string]results.StateCount
	// PeakSides holds the peaks per side (results.SideClient/SideTarget),
	// when TargetPorts or a tracer split them.
	PeakSides map[string]map[string]results.StateCount
	// Events is what the tracer counted, when it served.
	Events *results.KernelEvents
	Health results.CollectorHealth
}

// Sampler takes one sample every interval in its own goroutine: socket
// states of the run's ports, kernel counter deltas and the workload's
// progress. A failing source is recorded in the health and skipped.
type Sampler struct {
	cfg      SamplerConfig
	states   *StateSource
	tracer   *Tracer
	split    sideSplit
	peakSide [tracerSides]map[string]results.StateCount
	counters *counterReader

	mu        sync.Mutex
	base      map[string]int64 // counters at NewSampler
	prev      map[string]int64 // counters at the previous sample
	cur       map[string]int64
	baseOK    bool
	start     time.Time
	ticks     int64
	prevWork  WorkloadCounts
	counts    Counts
	tw        timeWaitCount                            // with the tracer: this sample's TIME_WAIT
	sides     map[string]map[string]results.StateCount // of the last count
	peakTotal [NumStates]uint64
	peakOrph  [NumStates]uint64
	peakUnk   uint64
	series    []results.Sample
	health    results.CollectorHealth
	errCounts map[string]int
	errOrder  []string
	costSum   time.Duration
	stateOK   bool // at least one state count succeeded
	// counterReads counts successful counter reads after the baseline.
	counterReads int
	// nextStates is when the CPU budget allows the next state count.
	nextStates time.Time

	stop    chan struct{}
	done    chan struct{}
	started bool
	result  *SamplerResult
}

// ValidateInterval checks an --interval value; 0 means the default.
func ValidateInterval(d time.Duration) (time.Duration, error) {
	if d == 0 {
		return DefaultInterval, nil
	}
	if d < MinInterval {
		return 0, fmt.Errorf("interval %v: %w", d, ErrInterval)
	}
	return d, nil
}

// NewSampler validates cfg, opens the state source and reads the counters'
// baseline. An explicit --collector-source that cannot be opened is an
// error; with "auto" a refused netlink socket falls back to /proc.
func NewSampler(cfg SamplerConfig) (*Sampler, error) {
	var err error
	if cfg.Interval, err = ValidateInterval(cfg.Interval); err != nil {
		return nil, err
	}
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = DefaultProcRoot
	}
	if cfg.MaxCPU == 0 {
		cfg.MaxCPU = DefaultMaxCPU
	}
	if cfg.Source == "" {
		cfg.Source = SourceAuto
	}
	if err := ValidateSource(cfg.Source); err != nil {
		return nil, err
	}
	var tracer *Tracer
	var tracerReason string
	if cfg.Tracer != nil && (cfg.Source == SourceAuto || cfg.Source == SourceEBPF) {
		tracer, err = OpenTracer(*cfg.Tracer)
		if err != nil {
			if cfg.Source == SourceEBPF || !errors.Is(err, ErrTracerUnavailable) {
				return nil, err
			}
			tracerReason = err.Error()
		}
	} else if cfg.Source == SourceEBPF {
		return nil, fmt.Errorf("%w: source ebpf needs the target ports to follow", ErrTracerConfig)
	}
	st, err := OpenStateSource(StateQuery{ProcRoot: cfg.ProcRoot, Source: cfg.Source, Ports: cfg.Ports, NetnsPath: cfg.NetnsPath})
	if err != nil {
		if tracer != nil {
			tracer.Close()
		}
		return nil, err
	}
	s := &Sampler{
		cfg:       cfg,
		states:    st,
		tracer:    tracer,
		split:     sideSplit{targets: newPortSet(cfg.TargetPorts)},
		counters:  newCounterReader(cfg.ProcRoot),
		base:      make(map[string]int64, 160),
		prev:      make(map[string]int64, 160),
		cur:       make(map[string]int64, 160),
		errCounts: map[string]int{},
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	s.health.IntervalNs = int64(cfg.Interval)
	if cfg.MaxCPU > 0 {
		s.health.CPUBudget = cfg.MaxCPU
	}
	s.health.Ports = append([]uint16(nil), cfg.Ports...)
	s.health.TracerReason = tracerReason
	n, err := s.counters.read(s.base)
	s.health.ParseErrors += uint64(n)
	if err != nil {
		s.recordErr("counters at start: " + err.Error())
	}
	s.baseOK = len(s.base) > 0
	for k, v := range s.base {
		s.prev[k] = v
	}
	if cfg.Workload != nil {
		s.prevWork = cfg.Workload()
	}
	s.start = time.Now()
	return s, nil
}

// Start samples every Interval in its own goroutine until Stop.
func (s *Sampler) Start() {
	s.mu.Lock()
	if s.started || s.result != nil {
		s.mu.Unlock()
		return
	}
	s.started = true
	s.start = time.Now()
	s.mu.Unlock()
	go s.loop()
}

func (s *Sampler) loop() {
	defer close(s.done)
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.sampleAndNotify(now, false)
		}
	}
}

func (s *Sampler) sampleAndNotify(now time.Time, final bool) {
	smp := s.sample(now, final)
	if s.cfg.OnSample != nil {
		s.cfg.OnSample(smp)
	}
}

// sample takes one sample. It runs on the sampler goroutine, or in Stop
// after that goroutine ended.
func (s *Sampler) sample(now time.Time, final bool) results.Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !final {
		// Ticks the ticker dropped because a sample overran its interval.
		n := int64(now.Sub(s.start) / s.cfg.Interval)
		if n > s.ticks+1 {
			s.health.Missed += int(n - s.ticks - 1)
		}
		if n > s.ticks {
			s.ticks = n
		}
	}
	t0 := time.Now()
	smp := results.Sample{T: t0, Elapsed: t0.Sub(s.start).Seconds()}

	throttled := !final && t0.Before(s.nextStates)
	if s.tracer != nil {
		// The census is cheap: every sample. TIME_WAIT (mini-sockets the
		// tracepoints do not see) comes from the state source, within the
		// CPU budget like any state count.
		throttled = s.timeWaitFromSource(t0, throttled, &smp)
	}
	if throttled && s.tracer == nil {
		s.health.Throttled++
		smp.Missing = append(smp.Missing, "states")
	} else if cpu, err := s.countStates(); err != nil {
		s.recordErr("socket states: " + err.Error())
		smp.Missing = append(smp.Missing, "states")
	} else {
		if s.cfg.MaxCPU > 0 && s.tracer == nil {
			// The next count waits until this one's CPU time fits the budget.
			if float64(cpu) > s.cfg.MaxCPU*float64(s.cfg.Interval) {
				s.nextStates = t0.Add(time.Duration(float64(cpu) / s.cfg.MaxCPU))
			}
		}
		s.stateOK = true
		s.health.ParseErrors += s.counts.ParseErrors
		smp.States = s.counts.Map()
		for i := range s.counts.Total {
			s.peakTotal[i] = max(s.peakTotal[i], s.counts.Total[i])
			s.peakOrph[i] = max(s.peakOrph[i], s.counts.Orphaned[i])
		}
		s.peakUnk = max(s.peakUnk, s.counts.Unknown)
		if smp.Sides = s.sides; smp.Sides != nil {
			for i, name := range []string{results.SideClient, results.SideTarget} {
				s.peakSide[i] = peakStates(s.peakSide[i], smp.Sides[name])
			}
		}
	}
	s.health.Notes = append(s.health.Notes, s.states.TakeNotes()...)

	clear(s.cur)
	n, err := s.counters.read(s.cur)
	s.health.ParseErrors += uint64(n)
	if err != nil {
		s.recordErr("counters: " + err.Error())
	}
	if len(s.cur) == 0 {
		smp.Missing = append(smp.Missing, "counters")
	} else {
		smp.Counters = map[string]int64{}
		for k, v := range s.cur {
			if p, ok := s.prev[k]; ok && v != p {
				smp.Counters[k] = v - p
			}
		}
		if len(smp.Counters) == 0 {
			smp.Counters = nil
		}
		for k, v := range s.cur {
			s.prev[k] = v
		}
		s.counterReads++
		if !s.baseOK {
			// The baseline failed: deltas run from the first good read.
			for k, v := range s.cur {
				s.base[k] = v
			}
			s.baseOK = true
		}
	}

	if s.cfg.Workload != nil {
		w := s.cfg.Workload()
		smp.Cycles = w.Cycles - s.prevWork.Cycles
		smp.Errors = w.Errors - s.prevWork.Errors
		smp.Attempts = w.Attempts - s.prevWork.Attempts
		smp.Held = w.Held
		s.prevWork = w
	}

	cost := time.Since(t0)
	s.costSum += cost
	s.health.MaxCostNs = max(s.health.MaxCostNs, int64(cost))
	s.health.Samples++
	s.series = append(s.series, smp)
	return smp
}

func (s *Sampler) recordErr(msg string) {
	if _, ok := s.errCounts[msg]; !ok {
		s.errOrder = append(s.errOrder, msg)
	}
	s.errCounts[msg]++
}

// Stop takes a final sample (covering the last, partial interval), stops
// the goroutine and returns everything. Later calls return the same result.
func (s *Sampler) Stop() SamplerResult {
	s.mu.Lock()
	if s.result != nil {
		r := *s.result
		s.mu.Unlock()
		return r
	}
	started := s.started
	s.mu.Unlock()
	if started {
		close(s.stop)
		<-s.done
	}
	s.sampleAndNotify(time.Now(), true)

	s.mu.Lock()
	defer s.mu.Unlock()
	r := SamplerResult{Series: s.series, Peaks: map[string]results.StateCount{}}
	if s.peakSide[0] != nil || s.peakSide[1] != nil {
		r.PeakSides = map[string]map[string]results.StateCount{results.SideClient: s.peakSide[0], results.SideTarget: s.peakSide[1]}
	}
	for i, name := range StateNames {
		if name != "" && s.peakTotal[i] > 0 {
			r.Peaks[name] = results.StateCount{Total: s.peakTotal[i], Orphaned: s.peakOrph[i]}
		}
	}
	if s.peakUnk > 0 {
		r.Peaks["UNKNOWN"] = results.StateCount{Total: s.peakUnk}
	}
	// Whole-run deltas run to the last good read; with none after the
	// baseline there is nothing to report (n/a, not 0).
	if s.baseOK && s.counterReads > 0 {
		names := make([]string, 0, len(s.prev))
		for k := range s.prev {
			if _, ok := s.base[k]; ok {
				names = append(names, k)
			}
		}
		sort.Strings(names)
		for _, k := range names {
			r.Counters = append(r.Counters, results.CounterDelta{Name: k, Delta: s.prev[k] - s.base[k], Scope: CounterScope(k)})
		}
	}
	h := s.health
	if s.stateOK && s.tracer != nil {
		h.Source = SourceEBPF
	} else if s.stateOK {
		h.Source = s.states.Name()
	} else {
		h.Source = "none"
	}
	h.FallbackReason = s.states.FallbackReason()
	h.DumpRetries = s.states.DumpRetries()
	if h.Samples > 0 {
		h.MeanCostNs = int64(s.costSum) / int64(h.Samples)
	}
	for i, msg := range s.errOrder {
		if i == maxErrors {
			h.Errors = append(h.Errors, fmt.Sprintf("... and %d more distinct errors", len(s.errOrder)-maxErrors))
			break
		}
		if c := s.errCounts[msg]; c > 1 {
			msg = fmt.Sprintf("%s (%d times)", msg, c)
		}
		h.Errors = append(h.Errors, msg)
	}
	if s.tracer != nil {
		ev, err := s.tracer.Read()
		if err != nil {
			h.Errors = append(h.Errors, "kernel events: "+err.Error())
		}
		r.Events = ev
		s.tracer.Close()
	}
	r.Health = h
	s.states.Close()
	s.result = &r
	return r
}

// timeWaitFromSource counts TIME_WAIT with the state source for a sample
// whose other states come from the tracer, unless the CPU budget says to
// skip this one (then the sample lists "TIME_WAIT" in Missing). It returns
// whether it skipped.
func (s *Sampler) timeWaitFromSource(t0 time.Time, throttled bool, smp *results.Sample) bool {
	s.tw = timeWaitCount{}
	if throttled {
		s.health.Throttled++
		smp.Missing = append(smp.Missing, "TIME_WAIT")
		return true
	}
	var err error
	cpu := cpuCost(func() {
		s.split.reset()
		err = s.states.countInto(&s.split, &s.split.all)
	})
	if err != nil {
		s.recordErr("TIME_WAIT: " + err.Error())
		smp.Missing = append(smp.Missing, "TIME_WAIT")
		return true
	}
	if s.cfg.MaxCPU > 0 && float64(cpu) > s.cfg.MaxCPU*float64(s.cfg.Interval) {
		s.nextStates = t0.Add(time.Duration(float64(cpu) / s.cfg.MaxCPU))
	}
	s.tw = timeWaitCount{ok: true, all: s.split.all.Total[StateTimeWait],
		side: [tracerSides]uint64{s.split.side[0].Total[StateTimeWait], s.split.side[1].Total[StateTimeWait]}}
	return false
}

// timeWaitCount is the state source's TIME_WAIT count of one sample.
type timeWaitCount struct {
	ok   bool
	all  uint64
	side [tracerSides]uint64
}

// countStates counts socket states into s.counts (and s.sides) and returns
// the CPU time it took: from the tracer's census when it serves, else from
// the state source, split by side when the target ports are known.
func (s *Sampler) countStates() (cpu time.Duration, err error) {
	s.sides = nil
	if s.tracer != nil {
		cpu = cpuCost(func() {
			var cen TracerCensus
			if cen, err = s.tracer.Census(); err != nil {
				return
			}
			s.counts.reset()
			for _, m := range cen.Sides {
				for name, c := range m {
					for i, n := range StateNames {
						if n == name {
							s.counts.Total[i] += c.Total
						}
					}
				}
			}
			s.sides = cen.Sides
			if s.tw.ok {
				s.counts.Total[StateTimeWait] = s.tw.all
				for i, name := range []string{results.SideClient, results.SideTarget} {
					if v := s.tw.side[i]; v > 0 && s.split.targets != nil {
						s.sides[name]["TIME_WAIT"] = results.StateCount{Total: v}
					}
				}
			}
		})
		return cpu, err
	}
	if s.split.targets == nil {
		cpu = cpuCost(func() { err = s.states.Count(&s.counts) })
		return cpu, err
	}
	cpu = cpuCost(func() {
		s.split.reset()
		err = s.states.countInto(&s.split, &s.split.all)
	})
	s.counts = s.split.all
	if err == nil {
		s.sides = s.split.sidesMap()
	}
	return cpu, err
}

// peakStates raises the peaks in p to the counts in m (each maximum on its
// own), allocating p on first use.
func peakStates(p, m map[string]results.StateCount) map[string]results.StateCount {
	if p == nil {
		p = map[string]results.StateCount{}
	}
	for k, c := range m {
		cur := p[k]
		cur.Total = max(cur.Total, c.Total)
		cur.Orphaned = max(cur.Orphaned, c.Orphaned)
		p[k] = cur
	}
	return p
}
