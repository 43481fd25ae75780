package collector

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/closeload/closeload/kernel"
	"github.com/closeload/closeload/results"
)

// maxTrackedSockets sizes the kernel's table of the run's sockets (their
// state entry times): preallocated, about 20 MiB. Beyond that many sockets
// alive at once, the least recently changed lose their entry, and with it
// the dwell of the state they are in.
const maxTrackedSockets = 1 << 18

// maxTrackedTimewait sizes the kernel's table of the run's timewait
// mini-sockets (about 20 MiB, preallocated): net.ipv4.tcp_max_tw_buckets
// is 262144 on most hosts, and beyond it the kernel makes no mini-socket.
const maxTrackedTimewait = 1 << 18

// socketPrograms is how many of Tracer.progs follow sockets (state
// changes and resets); the timer programs, where they run, come after.
const socketPrograms = 3

// maxCounterSlots bounds the per-CPU slots of the counter and dwell
// arrays: CPUs beyond it share slots (the adds are atomic), which keeps a
// read's cost and the maps' memory bounded on large machines.
const maxCounterSlots = 8

// Tracer counts the TCP state transitions and resets of the run's sockets in
// the kernel. Open it before the workload starts (the target may already
// listen): its census and counts cover what happens after OpenTracer, so a
// listener opened earlier is absent from the census. Its methods are safe
// for concurrent use.
type Tracer struct {
	cfg      TracerConfig
	counters *ebpf.Map
	dwell    *ebpf.Map
	socks    *ebpf.Map
	tws      *ebpf.Map // nil where mini-socket lifetimes are not measured
	ctrMem   *ebpf.Memory
	dwellMem *ebpf.Memory
	progs    []*ebpf.Program
	links    []link.Link
	reasons  map[int]string
	methods  map[string]string

	// slots is how many per-CPU copies the counter and dwell arrays hold;
	// dwellLen the dwell buckets in one.
	slots, dwellLen int

	// missed0 is the programs' recursion misses when the tracer opened.
	missed0 uint64

	mu  sync.Mutex
	buf []byte
	ctr []uint64
}

// recursionMisses sums the kernel's count of events the socket programs
// missed because they were running already on the CPU (interrupted by a
// softirq) or another BPF program was. The timer programs' misses are left
// out: they run for every timer of the machine, nearly none of them the
// run's.
func (t *Tracer) recursionMisses() uint64 {
	return sumStats(t.progs[:min(len(t.progs), socketPrograms)]).RecursionMisses
}

// sumStats adds up the kernel's statistics of programs.
func sumStats(progs []*ebpf.Program) ebpf.ProgramStats {
	var sum ebpf.ProgramStats
	for _, p := range progs {
		if st, err := p.Stats(); err == nil {
			sum.Runtime += st.Runtime
			sum.RunCount += st.RunCount
			sum.RecursionMisses += st.RecursionMisses
		}
	}
	return sum
}

func unavailable(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrTracerUnavailable, fmt.Sprintf(format, args...))
}

// OpenTracer loads and attaches the programs. Errors other than a bad
// config wrap ErrTracerUnavailable and say why.
func OpenTracer(cfg TracerConfig) (*Tracer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.Targets = append([]TracerTarget(nil), cfg.Targets...)
	if cfg.NetnsInode == 0 {
		path := cfg.NetnsPath
		if path == "" {
			path = "/proc/self/ns/net"
		}
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			return nil, unavailable("network namespace %s: %v", path, err)
		}
		cfg.NetnsInode = st.Ino
	}
	if cfg.NetnsInode > 0xffffffff {
		return nil, fmt.Errorf("%w: netns inode %d does not fit 32 bits", ErrTracerConfig, cfg.NetnsInode)
	}
	off, err := loadKernelOffsets()
	if err != nil {
		return nil, unavailable("%v", err)
	}
	_ = rlimit.RemoveMemlock()
	t := &Tracer{cfg: cfg, reasons: off.resetReasons, slots: 1, dwellLen: len(cfg.Targets) * tracerSides * tracerStateIdx * dwellBuckets}
	if n, err := ebpf.PossibleCPU(); err == nil {
		t.slots = min(n, maxCounterSlots)
	}
	ok := false
	defer func() {
		if !ok {
			t.Close()
		}
	}()
	if err := t.createMaps(); err != nil {
		return nil, err
	}
	mk := func() *progBuilder {
		return &progBuilder{counters: t.counters.FD(), dwell: t.dwell.FD(), socks: t.socks.FD(), slots: t.slots, dwellLen: t.dwellLen,
			off: off, netns: uint32(cfg.NetnsInode), targets: cfg.Targets}
	}
	for _, a := range []struct {
		tracepoint string
		ins        asm.Instructions
	}{
		{"inet_sock_set_state", mk().buildSetState()},
		{"tcp_send_reset", mk().buildSendReset()},
		{"tcp_receive_reset", mk().buildReceiveReset()},
	} {
		if err := t.load(a.tracepoint, a.ins); err != nil {
			return nil, err
		}
	}
	twWhy := "not asked for (it is measured for orphan-finwait2, for runs that set tcp_fin_timeout, tcp_tw_reuse, tcp_max_tw_buckets or tcp_rfc1337, and on request)"
	if cfg.Timewait {
		twWhy = t.followTimewait(off, mk)
	}
	t.methods = tracerMethods(off, twWhy)
	t.buf = make([]byte, 8*ctrCount)
	t.ctr = make([]uint64, ctrCount)
	t.missed0 = t.recursionMisses()
	ok = true
	return t, nil
}

func (t *Tracer) createMaps() error {
	var err error
	mk := func(name string, typ ebpf.MapType, key, val, n, flags uint32) *ebpf.Map {
		if err != nil {
			return nil
		}
		var m *ebpf.Map
		m, err = ebpf.NewMap(&ebpf.MapSpec{Name: name, Type: typ, KeySize: key, ValueSize: val, MaxEntries: n, Flags: flags})
		if err != nil {
			if errors.Is(err, os.ErrPermission) {
				err = unavailable("creating BPF maps: %v (needs root or CAP_BPF and CAP_PERFMON in the initial user namespace)", err)
			} else {
				err = unavailable("creating BPF map %s: %v", name, err)
			}
		}
		return m
	}
	t.counters = mk("cl_counters", ebpf.Array, 4, 8, uint32(t.slots*ctrCount), unix.BPF_F_MMAPABLE)
	t.dwell = mk("cl_dwell", ebpf.Array, 4, 8, uint32(t.slots*t.dwellLen), unix.BPF_F_MMAPABLE)
	if err != nil {
		return err
	}
	t.socks, err = ebpf.NewMap(&ebpf.MapSpec{Name: "cl_socks", Type: ebpf.LRUHash, KeySize: 8, ValueSize: sockSize, MaxEntries: maxTrackedSockets})
	if err != nil {
		return unavailable("creating BPF map cl_socks: %v", err)
	}
	if t.ctrMem, err = t.counters.Memory(); err != nil {
		return unavailable("mapping the counters: %v", err)
	}
	if t.dwellMem, err = t.dwell.Memory(); err != nil {
		return unavailable("mapping the dwell histograms: %v", err)
	}
	return nil
}

// load loads a program for a BTF-typed tracepoint and attaches it.
func (t *Tracer) load(tracepoint string, ins asm.Instructions) error {
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "cl_" + tracepoint[:min(len(tracepoint), 12)], Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp,
		AttachTo: tracepoint, License: "GPL", Instructions: ins,
	})
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return unavailable("loading the %s program: %v", tracepoint, err)
		}
		return unavailable("the kernel refused the %s program: %v", tracepoint, err)
	}
	t.progs = append(t.progs, p)
	l, err := link.AttachTracing(link.TracingOptions{Program: p})
	if err != nil {
		return unavailable("attaching to tracepoint %s: %v", tracepoint, err)
	}
	t.links = append(t.links, l)
	return nil
}

// followTimewait attaches the programs that measure the lifetime of the
// run's timewait mini-sockets from their timers. It returns why they do
// not run, or "": the rest of the tracer works without them.
func (t *Tracer) followTimewait(off kernelOffsets, mk func() *progBuilder) string {
	addr, err := kernel.NewFS("").KernelSymbol("tw_timer_handler")
	if err != nil {
		return err.Error()
	}
	t.tws, err = ebpf.NewMap(&ebpf.MapSpec{Name: "cl_timewait", Type: ebpf.LRUHash, KeySize: 8, ValueSize: twSize, MaxEntries: maxTrackedTimewait})
	if err != nil {
		return fmt.Sprintf("creating BPF map cl_timewait: %v", err)
	}
	n := len(t.progs)
	for _, a := range []struct {
		tracepoint string
		kind       int
	}{{"timer_start", timerStart}, {"timer_cancel", timerCancel}, {"timer_expire_entry", timerExpire}} {
		b := mk()
		b.tws, b.twHandler = t.tws.FD(), addr
		if err := t.load(a.tracepoint, b.buildTimer(a.kind)); err != nil {
			for _, l := range t.links[n:] {
				l.Close()
			}
			for _, p := range t.progs[n:] {
				p.Close()
			}
			t.links, t.progs = t.links[:n], t.progs[:n]
			return err.Error()
		}
	}
	return ""
}

func tracerMethods(off kernelOffsets, twWhy string) map[string]string {
	m := map[string]string{
		"transitions": "BTF-typed tracepoint sock:inet_sock_set_state, counted in the kernel",
		"dwell": "per-socket entry time in a kernel LRU hash map, folded on each transition into log-linear buckets " +
			"(16 per power of two) recorded at their midpoints",
		"resets": "BTF-typed tracepoints tcp:tcp_send_reset and tcp:tcp_receive_reset, state read from the socket (a socket " +
			"the kernel moved to CLOSE just before sending, an abortive close, counts under the state it left)",
		"reset_reasons":       "enum sk_rst_reason of tcp:tcp_send_reset, names from the kernel's BTF",
		"time_wait_handovers": "FIN_WAIT2 or CLOSING -> CLOSE transitions of sockets that sent or received no reset",
		"time_wait_lifetime": "tracepoints timer:timer_start, timer_cancel and timer_expire_entry on the mini-socket's " +
			"tw_timer: from its first arm (the hand-over) to its expiry, or to its last cancel for one killed early",
	}
	if twWhy != "" {
		m["time_wait_lifetime"] = results.MethodNotMeasured + twWhy
	}
	if !off.haveSkbDev {
		m["resets"] += "; resets sent without a socket are not counted (no sk_buff.dev in BTF)"
	}
	return m
}

// readCounters sums the first n counters of every slot into t.ctr.
func (t *Tracer) readCounters(n int) error {
	clear(t.ctr)
	for sl := range t.slots {
		if _, err := t.ctrMem.ReadAt(t.buf[:8*n], int64(8*sl*ctrCount)); err != nil {
			return fmt.Errorf("reading the tracer's counters: %w", err)
		}
		for i := range n {
			t.ctr[i] += binary.NativeEndian.Uint64(t.buf[8*i:])
		}
	}
	return nil
}

// Census counts the run's sockets by state and side from the transitions
// counted so far: entered minus left, a fixed cost whatever the number of
// sockets.
func (t *Tracer) Census() (TracerCensus, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := ctrTransitions + len(t.cfg.Targets)*tracerSides*tracerStateIdx*tracerStateIdx
	if err := t.readCounters(n); err != nil {
		return TracerCensus{}, err
	}
	return censusMap(censusFromCounters(t.ctr, len(t.cfg.Targets))), nil
}

// Totals returns each target port's counts so far, both sides together.
func (t *Tracer) Totals() ([]TracerTotals, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.readCounters(ctrCount); err != nil {
		return nil, err
	}
	return totalsFromCounters(t.ctr, t.cfg.Targets), nil
}

// Read returns everything counted since OpenTracer, per scenario and side.
func (t *Tracer) Read() (*results.KernelEvents, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.readCounters(ctrCount); err != nil {
		return nil, err
	}
	b := make([]byte, 8*t.dwellLen)
	dwell := make([]uint64, dwellCount)
	for sl := range t.slots {
		if _, err := t.dwellMem.ReadAt(b, int64(8*sl*t.dwellLen)); err != nil {
			return nil, fmt.Errorf("reading the tracer's dwell histograms: %w", err)
		}
		for i := range t.dwellLen {
			dwell[i] += binary.NativeEndian.Uint64(b[8*i:])
		}
	}
	open, err := t.foldTimewait(dwell)
	if err != nil {
		return nil, err
	}
	ev, err := buildEvents(t.cfg, t.ctr, dwell, open, t.reasons, maps.Clone(t.methods))
	if ev != nil {
		ev.Missed = t.recursionMisses() - t.missed0
	}
	return ev, err
}

// foldTimewait goes through the timewait table: a mini-socket cancelled
// for longer than a re-arm takes was killed, and its lifetime and kill are
// added to dwell and t.ctr (the kernel folds it only when its address is
// armed again, and deletes it then, so nothing is counted twice); the rest
// are still alive, counted per group and state in the result.
func (t *Tracer) foldTimewait(dwell []uint64) ([]uint64, error) {
	open := make([]uint64, tracerGroups*tracerStateIdx)
	if t.tws == nil {
		return open, nil
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil { // bpf_ktime_get_ns's clock
		return nil, fmt.Errorf("reading the monotonic clock: %w", err)
	}
	now := uint64(ts.Nano())
	var key uint64
	var val [twSize]byte
	it := t.tws.Iterate()
	for it.Next(&key, &val) {
		born := binary.NativeEndian.Uint64(val[twBorn:])
		ended := binary.NativeEndian.Uint64(val[twEnded:])
		where := binary.NativeEndian.Uint32(val[twWhere:])
		g, st := int(where>>8), int(where&15)
		if g >= len(t.cfg.Targets)*tracerSides {
			continue
		}
		if ended == 0 || now-ended <= twRearm || ended < born {
			open[g*tracerStateIdx+st]++
			continue
		}
		dwell[(g*tracerStateIdx+st)*dwellBuckets+dwellBucketOf(ended-born)]++
		t.ctr[ctrTWKilled+g*tracerStateIdx+st]++
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading the tracer's timewait table: %w", err)
	}
	return open, nil
}

// Close detaches the programs and frees the maps.
func (t *Tracer) Close() error {
	for _, l := range t.links {
		l.Close()
	}
	t.links = nil
	for _, p := range t.progs {
		p.Close()
	}
	t.progs = nil
	for _, m := range []*ebpf.Map{t.counters, t.dwell, t.socks, t.tws} {
		if m != nil {
			m.Close()
		}
	}
	t.counters, t.dwell, t.socks, t.tws = nil, nil, nil, nil
	return nil
}

// RunStats returns how many times the tracer's programs ran and the time
// they spent, as the kernel accounts it while BPF run-time statistics are
// enabled (ebpf.EnableStats, as bpftool does); zero otherwise. It is the
// tracer's own cost per event, free of the noise of a churn's rate.
func (t *Tracer) RunStats() (runs uint64, cost time.Duration) {
	st := sumStats(t.progs)
	return st.RunCount, st.Runtime
}
