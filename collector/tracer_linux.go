package collector

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/closeload/closeload/results"
)

// tracefsRoot is where tracefs is (or gets) mounted.
const tracefsRoot = "/sys/kernel/tracing"

// maxTrackedSockets bounds the kernel's per-connection table of state
// entry times; a connection that does not fit is still counted, only its
// dwell is lost (KernelEvents.Untracked).
const maxTrackedSockets = 1 << 18

// recentCloses bounds the kernel's memory of sockets that just moved to
// CLOSE (for the state an abortive close's RST left); the oldest go first.
const recentCloses = 1 << 14

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
	closed   *ebpf.Map
	ctrMem   *ebpf.Memory
	dwellMem *ebpf.Memory
	progs    []*ebpf.Program
	links    []link.Link
	perfFDs  []int
	reasons  map[int]string
	methods  map[string]string

	// missed0 is the programs' recursion misses when the tracer opened.
	missed0 uint64

	mu  sync.Mutex
	buf []byte
	ctr []uint64
}

// recursionMisses sums the kernel's count of events the programs missed
// because another BPF program ran on the CPU.
func (t *Tracer) recursionMisses() uint64 {
	var n uint64
	for _, p := range t.progs {
		if st, err := p.Stats(); err == nil {
			n += st.RecursionMisses
		}
	}
	return n
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
	formats, err := readTracepointFormats()
	if err != nil {
		return nil, err
	}
	off, err := loadKernelOffsets()
	if err != nil {
		return nil, unavailable("%v", err)
	}
	_ = rlimit.RemoveMemlock()
	t := &Tracer{cfg: cfg, reasons: formats["tcp_send_reset"].Symbols("reason")}
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
		return &progBuilder{counters: t.counters.FD(), dwell: t.dwell.FD(), socks: t.socks.FD(), closed: t.closed.FD(), off: off, netns: uint32(cfg.NetnsInode), targets: cfg.Targets}
	}
	type attach struct {
		group, name string
		ins         asm.Instructions
	}
	var progs []attach
	{
		f := formats["inet_sock_set_state"]
		var fs setStateFields
		if err := fieldOffsets(f, map[string]*int16{"skaddr": &fs.skaddr}, 8); err != nil {
			return nil, err
		}
		if err := fieldOffsets(f, map[string]*int16{"oldstate": &fs.oldstate, "newstate": &fs.newstate}, 4); err != nil {
			return nil, err
		}
		if err := fieldOffsets(f, map[string]*int16{"sport": &fs.sport, "dport": &fs.dport, "protocol": &fs.protocol}, 2); err != nil {
			return nil, err
		}
		progs = append(progs, attach{"sock", "inet_sock_set_state", mk().buildSetState(fs)})
	}
	{
		f := formats["tcp_send_reset"]
		var fs sendResetFields
		if err := fieldOffsets(f, map[string]*int16{"skbaddr": &fs.skbaddr, "skaddr": &fs.skaddr}, 8); err != nil {
			return nil, err
		}
		if err := fieldOffsets(f, map[string]*int16{"state": &fs.state, "reason": &fs.reason}, 4); err != nil {
			return nil, err
		}
		if err := fieldOffsets(f, map[string]*int16{"saddr": &fs.saddr, "daddr": &fs.daddr}, 28); err != nil {
			return nil, err
		}
		progs = append(progs, attach{"tcp", "tcp_send_reset", mk().buildSendReset(fs)})
	}
	{
		f := formats["tcp_receive_reset"]
		var fs receiveResetFields
		if err := fieldOffsets(f, map[string]*int16{"skaddr": &fs.skaddr}, 8); err != nil {
			return nil, err
		}
		if err := fieldOffsets(f, map[string]*int16{"sport": &fs.sport, "dport": &fs.dport}, 2); err != nil {
			return nil, err
		}
		progs = append(progs, attach{"tcp", "tcp_receive_reset", mk().buildReceiveReset(fs)})
	}
	for _, a := range progs {
		p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "cl_" + a.name[:min(len(a.name), 12)], Type: ebpf.TracePoint, License: "GPL", Instructions: a.ins})
		if err != nil {
			if errors.Is(err, os.ErrPermission) {
				return nil, unavailable("loading the %s program: %v", a.name, err)
			}
			return nil, unavailable("the kernel refused the %s program: %v", a.name, err)
		}
		t.progs = append(t.progs, p)
		if err := t.attach(p, formats[a.name].ID); err != nil {
			return nil, unavailable("attaching to tracepoint %s:%s: %v", a.group, a.name, err)
		}
	}
	t.methods = tracerMethods(off, timewaitLifetimeProbe())
	t.buf = make([]byte, 8*ctrCount)
	t.ctr = make([]uint64, ctrCount)
	t.missed0 = t.recursionMisses()
	ok = true
	return t, nil
}

// attach opens the tracepoint's perf event by the ID its format file gave
// and links the program to it, so nothing after reading the formats needs
// tracefs.
func (t *Tracer) attach(p *ebpf.Program, id uint32) error {
	attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_TRACEPOINT, Config: uint64(id), Sample_type: unix.PERF_SAMPLE_RAW, Sample: 1, Wakeup: 1}
	fd, err := unix.PerfEventOpen(&attr, -1, 0, -1, unix.PERF_FLAG_FD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("perf_event_open: %w", err)
	}
	t.perfFDs = append(t.perfFDs, fd)
	l, err := link.AttachRawLink(link.RawLinkOptions{Target: fd, Program: p, Attach: ebpf.AttachPerfEvent})
	if err != nil {
		return err
	}
	t.links = append(t.links, l)
	return nil
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
	t.counters = mk("cl_counters", ebpf.Array, 4, 8, ctrCount, unix.BPF_F_MMAPABLE)
	t.dwell = mk("cl_dwell", ebpf.Array, 4, 8, dwellCount, unix.BPF_F_MMAPABLE)
	t.socks = mk("cl_socks", ebpf.Hash, 8, 16, maxTrackedSockets, unix.BPF_F_NO_PREALLOC)
	t.closed = mk("cl_closed", ebpf.LRUHash, 8, 8, recentCloses, 0)
	if err != nil {
		return err
	}
	if t.ctrMem, err = t.counters.Memory(); err != nil {
		return unavailable("mapping the counters: %v", err)
	}
	if t.dwellMem, err = t.dwell.Memory(); err != nil {
		return unavailable("mapping the dwell histograms: %v", err)
	}
	return nil
}

func fieldOffsets(f TracepointFormat, want map[string]*int16, size int) error {
	for name, dst := range want {
		fl, err := f.Field(name, size)
		if err != nil {
			return unavailable("%v", err)
		}
		*dst = int16(fl.Offset)
	}
	return nil
}

// readTracepointFormats reads the three format files. Where tracefs is not
// mounted, it is read through privateTracefs, so the host's mounts stay as
// they were.
func readTracepointFormats() (map[string]TracepointFormat, error) {
	_, err := os.Stat(filepath.Join(tracefsRoot, "events"))
	switch {
	case err == nil:
		return readFormatsAt(tracefsRoot)
	case !errors.Is(err, os.ErrNotExist):
		return nil, unavailable("tracefs: %v (needs root, or CAP_BPF and CAP_PERFMON with tracefs readable)", err)
	}
	var f map[string]TracepointFormat
	if err := privateTracefs(func() error {
		var err error
		f, err = readFormatsAt(tracefsRoot)
		return err
	}); err != nil {
		return nil, err
	}
	return f, nil
}

var (
	tracefsOnce sync.Once
	tracefsRun  chan func()
	tracefsErr  error
)

// privateTracefs runs fn on one thread that has tracefs mounted in a mount
// namespace of its own. The thread is started once and parked for the life
// of the process: a thread that ended would take its mount namespace with
// it, but also send the parent-death signal to any child process the Go
// runtime happened to fork from it (the helpers and namespaced children
// tests start with Pdeathsig).
func privateTracefs(fn func() error) error {
	tracefsOnce.Do(func() {
		ready := make(chan error, 1)
		tracefsRun = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: the namespace is this thread's
			err := unix.Unshare(unix.CLONE_NEWNS)
			if err != nil {
				err = unavailable("tracefs is not mounted and a private mount namespace to mount it in was refused: %v "+
					"(needs root: CAP_SYS_ADMIN to mount tracefs, CAP_BPF and CAP_PERFMON to load the programs)", err)
			} else if err = unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				err = unavailable("making a private mount namespace: %v", err)
			} else if err = unix.Mount("nodev", tracefsRoot, "tracefs", 0, ""); err != nil {
				err = unavailable("tracefs is not mounted at %s and mounting it failed: %v", tracefsRoot, err)
			}
			ready <- err
			if err != nil {
				select {} // parked: this thread's namespace is no longer the process's
			}
			for f := range tracefsRun {
				f()
			}
		}()
		tracefsErr = <-ready
	})
	if tracefsErr != nil {
		return tracefsErr
	}
	done := make(chan error, 1)
	tracefsRun <- func() { done <- fn() }
	return <-done
}

func readFormatsAt(root string) (map[string]TracepointFormat, error) {
	files := map[string]string{
		"inet_sock_set_state": "sock/inet_sock_set_state",
		"tcp_send_reset":      "tcp/tcp_send_reset",
		"tcp_receive_reset":   "tcp/tcp_receive_reset",
	}
	out := map[string]TracepointFormat{}
	for name, rel := range files {
		path := filepath.Join(root, "events", rel, "format")
		fh, err := os.Open(path)
		if err != nil {
			return nil, unavailable("tracepoint %s: %v", rel, err)
		}
		f, err := ParseTracepointFormat(fh)
		fh.Close()
		if err != nil {
			return nil, unavailable("%s: %v", path, err)
		}
		if f.ID == 0 {
			return nil, unavailable("%s: no tracepoint ID", path)
		}
		out[name] = f
	}
	return out, nil
}

// timewaitLifetimeProbe tries to load a tracing (fentry) program on the
// timewait teardown; the lifetime of mini-sockets is measurable only where
// that works. It returns why it does not, or "".
func timewaitLifetimeProbe() string {
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.Tracing, AttachType: ebpf.AttachTraceFEntry, AttachTo: "inet_twsk_kill", License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if errors.Is(err, os.ErrPermission) {
		// cilium/ebpf adds a MEMLOCK hint to EPERM; memlock is not the
		// cause on kernels that account BPF memory to the cgroup.
		return "fentry on inet_twsk_kill refused: operation not permitted"
	}
	if err != nil {
		return fmt.Sprintf("fentry on inet_twsk_kill refused: %v", err)
	}
	p.Close()
	return "fentry on inet_twsk_kill loads here, but closeload does not attach it yet"
}

func tracerMethods(off kernelOffsets, twWhy string) map[string]string {
	m := map[string]string{
		"transitions": "tracepoint sock:inet_sock_set_state, counted in the kernel",
		"dwell": "per-socket entry time in a kernel hash map, folded on each transition into log-linear buckets " +
			"(16 per power of two) recorded at their midpoints",
		"resets": "tracepoints tcp:tcp_send_reset (state in its record; a socket the kernel moved to CLOSE just before " +
			"sending, an abortive close, counts under the state it left) and tcp:tcp_receive_reset (state read from the socket)",
		"reset_reasons":       "enum sk_rst_reason of tcp:tcp_send_reset, names from its format file",
		"time_wait_handovers": "FIN_WAIT2 or CLOSING -> CLOSE transitions of sockets that sent or received no reset",
		"time_wait_lifetime":  "not measured: " + twWhy,
	}
	if !off.haveSkbDev {
		m["resets"] += "; resets sent without a socket are not counted (no sk_buff.dev in BTF)"
	}
	return m
}

// readCounters copies the counters from the mapping into t.ctr.
func (t *Tracer) readCounters(n int) error {
	if _, err := t.ctrMem.ReadAt(t.buf[:8*n], 0); err != nil {
		return fmt.Errorf("reading the tracer's counters: %w", err)
	}
	for i := 0; i < n; i++ {
		t.ctr[i] = binary.NativeEndian.Uint64(t.buf[8*i:])
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
	groups := len(t.cfg.Targets) * tracerSides
	b := make([]byte, 8*groups*tracerStateIdx*dwellBuckets)
	if _, err := t.dwellMem.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("reading the tracer's dwell histograms: %w", err)
	}
	dwell := make([]uint64, dwellCount)
	for i := 0; i < len(b)/8; i++ {
		dwell[i] = binary.NativeEndian.Uint64(b[8*i:])
	}
	ev, err := buildEvents(t.cfg, t.ctr, dwell, t.reasons, maps.Clone(t.methods))
	if ev != nil {
		ev.Missed = t.recursionMisses() - t.missed0
	}
	return ev, err
}

// Close detaches the programs and frees the maps.
func (t *Tracer) Close() error {
	for _, l := range t.links {
		l.Close()
	}
	t.links = nil
	for _, fd := range t.perfFDs {
		unix.Close(fd)
	}
	t.perfFDs = nil
	for _, p := range t.progs {
		p.Close()
	}
	t.progs = nil
	for _, m := range []*ebpf.Map{t.counters, t.dwell, t.socks, t.closed} {
		if m != nil {
			m.Close()
		}
	}
	t.counters, t.dwell, t.socks, t.closed = nil, nil, nil, nil
	return nil
}
