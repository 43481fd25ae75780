package collector

import (
	"errors"
	"fmt"

	"github.com/closeload/closeload/results"
)

// SourceEBPF names the kernel-event tracer as a collector source.
const SourceEBPF = "ebpf"

// ErrTracerUnavailable marks a tracer that cannot run here: no privilege
// (unprivileged user namespace, unprivileged_bpf_disabled), no BTF or
// tracepoint, or a kernel whose records do not match. Callers fall back to
// sock_diag or /proc; the wrapped message says why.
var ErrTracerUnavailable = errors.New("eBPF tracer unavailable")

// ErrTracerConfig marks a TracerConfig the tracer cannot follow.
var ErrTracerConfig = errors.New("bad tracer config")

// MaxTracerTargets bounds the target ports one tracer follows: each becomes a
// compare in the kernel programs and a block of counters.
const MaxTracerTargets = 16

// TracerConfig says whose sockets the tracer counts.
type TracerConfig struct {
	// NetnsInode is the inode of the network namespace to follow (as in
	// /proc/PID/ns/net); 0 means the caller's own.
	NetnsInode uint64
	// NetnsPath, when set and NetnsInode is 0, names the namespace by a
	// file such as /proc/PID/ns/net.
	NetnsPath string
	// Targets are the target ports: a socket whose local port is one is the
	// target's side of that scenario, one whose remote port is, the client's.
	Targets []TracerTarget
	// Timewait also measures the lifetime of the run's timewait
	// mini-sockets, from the timer tracepoints: every timer of the machine
	// (several per connection) then runs a short check, which costs a
	// churn a few percent of its rate.
	Timewait bool
}

// TracerTarget is one target port and the scenario its connections play
// (the built-in target listens on one port per scenario); Scenario may be
// empty for an external target.
type TracerTarget struct {
	Port     uint16
	Scenario string
}

func (c TracerConfig) validate() error {
	if len(c.Targets) == 0 || len(c.Targets) > MaxTracerTargets {
		return fmt.Errorf("%w: %d target ports, want 1..%d", ErrTracerConfig, len(c.Targets), MaxTracerTargets)
	}
	seen := map[uint16]bool{}
	for _, t := range c.Targets {
		if t.Port == 0 {
			return fmt.Errorf("%w: port 0: %w", ErrTracerConfig, ErrBadPort)
		}
		if seen[t.Port] {
			return fmt.Errorf("%w: port %d given twice", ErrTracerConfig, t.Port)
		}
		seen[t.Port] = true
	}
	return nil
}

// Layout of the kernel-side counters. A group is one target and side:
// group = target*2 + side, side 0 client, 1 target. Every figure is a u64
// in one array the programs add to atomically and user space reads through
// a memory mapping, so a read costs no system call per counter.
const (
	tracerSides    = 2
	tracerGroups   = MaxTracerTargets * tracerSides
	tracerStateIdx = 16 // state numbers are masked to 0..15
	tracerReasons  = 32 // enum sk_rst_reason values are clamped to 0..31

	ctrTransitions = 0                                                           // + g*256 + old*16 + new
	ctrResetsSent  = ctrTransitions + tracerGroups*tracerStateIdx*tracerStateIdx // + g*16 + state
	ctrResetsRecv  = ctrResetsSent + tracerGroups*tracerStateIdx                 // + g*16 + state
	ctrReasons     = ctrResetsRecv + tracerGroups*tracerStateIdx                 // + g*32 + reason
	ctrHandovers   = ctrReasons + tracerGroups*tracerReasons                     // + g*16 + from state
	ctrTWKilled    = ctrHandovers + tracerGroups*tracerStateIdx                  // + g*16 + mini-socket state
	ctrUntracked   = ctrTWKilled + tracerGroups*tracerStateIdx                   // transitions not stored per socket
	ctrCount       = ctrUntracked + 1
)

// stateOrphanFinWait2 is where the dwell histograms keep the lifetime of
// timewait mini-sockets in FIN_WAIT2 (orphans handed over by tcp_close):
// not a state number of the kernel's, and named apart from the full
// socket's FIN_WAIT2. A mini-socket in TIME_WAIT keeps StateTimeWait,
// which full sockets never enter.
// Its name is results.StateOrphanFinWait2.
const stateOrphanFinWait2 = 15

// Dwell histograms in the kernel are log-linear: 16 sub-buckets per power
// of two. Values below 16 ns have a bucket each; a value d with highest
// set bit m >= 4 falls in bucket 16 + (m-4)*16 + (d>>(m-4) - 16), which is
// [lower, lower + 2^(m-4)) with lower = (16+sub) << (m-4): a relative
// width of at most 1/16. Highest bit 42 (about 73 minutes) is the last
// octave; longer dwells land in the last bucket.
const (
	dwellSubBits = 4
	dwellMaxBit  = 42
	dwellBuckets = 16 + (dwellMaxBit-dwellSubBits+1)*16 // 640
	dwellCount   = tracerGroups * tracerStateIdx * dwellBuckets
)

// dwellBucketOf is the Go twin of the kernel's bucket computation, for
// tests of the boundaries and for converting back.
func dwellBucketOf(d uint64) int {
	if d < 16 {
		return int(d)
	}
	m := 63
	for d>>uint(m) == 0 {
		m--
	}
	if m > dwellMaxBit {
		return dwellBuckets - 1
	}
	return int(d>>uint(m-dwellSubBits)) + (m-dwellSubBits)*16
}

// dwellBucketValue is the value a bucket's counts are recorded at in the
// HdrHistogram: its midpoint (exact below 16 ns), so the error of any
// percentile is at most half a bucket, 1/32 of the value. Values beyond the
// record's 60 s geometry are recorded at its highest value.
func dwellBucketValue(b int) int64 {
	if b < 16 {
		return int64(b)
	}
	shift := uint((b - 16) / 16) // m - 4
	sub := int64((b - 16) % 16)
	lower := (16 + sub) << shift
	v := lower + (int64(1)<<shift)/2
	return min(max(v, results.HistogramLowest), results.HistogramHighest)
}

// TracerCensus is the live count of the run's sockets by state and side,
// derived from the transitions (entered minus left) since the tracer opened.
// It counts full sockets only: a socket handed to a timewait mini-socket
// (TIME_WAIT, or an orphaned FIN_WAIT2 that sock_diag shows as an orphaned
// FIN_WAIT2) leaves the census, because mini-sockets do not report through
// the tracepoint (KernelEvents.Methods says whether their lifetime was
// measured). CLOSE is absent too (a socket in CLOSE is being created or
// gone), and so are sockets that did not change state since OpenTracer.
type TracerCensus struct {
	// Sides maps results.SideClient / SideTarget to per-state counts.
	Sides map[string]map[string]results.StateCount
}

// censusFromCounters computes the census from the transition counters.
// A listener's child enters SYN_RECV from LISTEN while the listener stays
// in LISTEN, so LISTEN -> SYN_RECV does not count as leaving LISTEN.
func censusFromCounters(ctr []uint64, ntargets int) (side [tracerSides][tracerStateIdx]int64) {
	for t := 0; t < ntargets; t++ {
		for sd := 0; sd < tracerSides; sd++ {
			g := t*tracerSides + sd
			base := ctrTransitions + g*tracerStateIdx*tracerStateIdx
			for o := 0; o < tracerStateIdx; o++ {
				for n := 0; n < tracerStateIdx; n++ {
					c := int64(ctr[base+o*tracerStateIdx+n])
					if c == 0 {
						continue
					}
					side[sd][n] += c
					if !(o == StateListen && n == StateSynRecv) {
						side[sd][o] -= c
					}
				}
			}
		}
	}
	return side
}

func censusMap(side [tracerSides][tracerStateIdx]int64) TracerCensus {
	c := TracerCensus{Sides: map[string]map[string]results.StateCount{}}
	for sd, name := range []string{results.SideClient, results.SideTarget} {
		m := map[string]results.StateCount{}
		for st := 1; st < NumStates; st++ {
			if st == StateClose || st == StateTimeWait || side[sd][st] <= 0 {
				continue
			}
			m[StateNames[st]] = results.StateCount{Total: uint64(side[sd][st])}
		}
		c.Sides[name] = m
	}
	return c
}

func sideName(sd int) string {
	if sd == 1 {
		return results.SideTarget
	}
	return results.SideClient
}

func stateName(st int) string {
	if st > 0 && st < NumStates && StateNames[st] != "" {
		return StateNames[st]
	}
	switch st {
	case stateNewSynRecv:
		return "NEW_SYN_RECV"
	case stateOrphanFinWait2:
		return results.StateOrphanFinWait2
	}
	return "UNKNOWN"
}

// buildEvents turns the kernel's counters and dwell buckets into the record.
// open counts the timewait mini-sockets still alive, by group*16 + state.
func buildEvents(cfg TracerConfig, ctr, dwell, open []uint64, reasons map[int]string, methods map[string]string) (*results.KernelEvents, error) {
	ev := &results.KernelEvents{Source: SourceEBPF, Methods: methods, Untracked: ctr[ctrUntracked]}
	for t, tg := range cfg.Targets {
		for sd := 0; sd < tracerSides; sd++ {
			g := t*tracerSides + sd
			grp := results.EventGroup{Scenario: tg.Scenario, Side: sideName(sd), Port: tg.Port}
			tr := map[[2]string]uint64{}
			base := ctrTransitions + g*tracerStateIdx*tracerStateIdx
			seen := false
			for o := 0; o < tracerStateIdx; o++ {
				for n := 0; n < tracerStateIdx; n++ {
					if c := ctr[base+o*tracerStateIdx+n]; c > 0 {
						tr[[2]string{stateName(o), stateName(n)}] += c
						seen = true
					}
				}
			}
			grp.Transitions = results.SortTransitions(tr)
			for st := 0; st < tracerStateIdx; st++ {
				if c := ctr[ctrResetsSent+g*tracerStateIdx+st]; c > 0 {
					grp.ResetsSent = incr(grp.ResetsSent, stateName(st), c)
					seen = true
				}
				if c := ctr[ctrResetsRecv+g*tracerStateIdx+st]; c > 0 {
					grp.ResetsReceived = incr(grp.ResetsReceived, stateName(st), c)
					seen = true
				}
				if c := ctr[ctrHandovers+g*tracerStateIdx+st]; c > 0 {
					grp.TimeWaitHandovers = incr(grp.TimeWaitHandovers, stateName(st), c)
				}
				if c := ctr[ctrTWKilled+g*tracerStateIdx+st]; c > 0 {
					grp.TimeWaitKilled = incr(grp.TimeWaitKilled, stateName(st), c)
				}
				if c := open[g*tracerStateIdx+st]; c > 0 {
					grp.TimeWaitOpen = incr(grp.TimeWaitOpen, stateName(st), c)
				}
			}
			for r := 0; r < tracerReasons; r++ {
				if c := ctr[ctrReasons+g*tracerReasons+r]; c > 0 {
					name, ok := reasons[r]
					if !ok {
						name = fmt.Sprintf("REASON_%d", r)
					}
					grp.ResetReasons = incr(grp.ResetReasons, name, c)
				}
			}
			for st := 0; st < tracerStateIdx; st++ {
				off := (g*tracerStateIdx + st) * dwellBuckets
				h := results.NewHistogram()
				for b := 0; b < dwellBuckets; b++ {
					if c := dwell[off+b]; c > 0 {
						if err := h.RecordValues(dwellBucketValue(b), int64(c)); err != nil {
							return nil, fmt.Errorf("dwell %s bucket %d: %w", stateName(st), b, err)
						}
					}
				}
				if h.TotalCount() == 0 {
					continue
				}
				ph, err := results.Summarize(h)
				if err != nil {
					return nil, err
				}
				if grp.Dwell == nil {
					grp.Dwell = map[string]results.Phase{}
				}
				grp.Dwell[stateName(st)] = ph
			}
			if seen {
				ev.Groups = append(ev.Groups, grp)
			}
		}
	}
	return results.MergeKernelEvents(ev) // sorts, and folds groups of one scenario and side
}

func incr(m map[string]uint64, k string, v uint64) map[string]uint64 {
	if m == nil {
		m = map[string]uint64{}
	}
	m[k] += v
	return m
}

// TracerTotals are one target port's counts since OpenTracer, both sides
// together: what `closeload watch` turns into rates.
type TracerTotals struct {
	Port                                                       uint16
	Transitions, ResetsSent, ResetsReceived, TimeWaitHandovers uint64
}

func totalsFromCounters(ctr []uint64, targets []TracerTarget) []TracerTotals {
	out := make([]TracerTotals, len(targets))
	for t, tg := range targets {
		out[t].Port = tg.Port
		for sd := 0; sd < tracerSides; sd++ {
			g := t*tracerSides + sd
			for i := 0; i < tracerStateIdx*tracerStateIdx; i++ {
				out[t].Transitions += ctr[ctrTransitions+g*tracerStateIdx*tracerStateIdx+i]
			}
			for st := 0; st < tracerStateIdx; st++ {
				out[t].ResetsSent += ctr[ctrResetsSent+g*tracerStateIdx+st]
				out[t].ResetsReceived += ctr[ctrResetsRecv+g*tracerStateIdx+st]
				out[t].TimeWaitHandovers += ctr[ctrHandovers+g*tracerStateIdx+st]
			}
		}
	}
	return out
}
