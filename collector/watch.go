package collector

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/closeload/closeload/results"
)

// WatchConfig configures a Watcher (closeload watch).
type WatchConfig struct {
	ProcRoot string
	Source   string
	// Ports to show one row each; empty shows every listening port found.
	Ports []uint16
	// NetnsPath watches another network namespace (see StateQuery).
	NetnsPath string
}

// WatchCounters are the counters the watch view shows as rates per second.
var WatchCounters = []string{
	"Tcp.ActiveOpens", "Tcp.PassiveOpens", "TcpExt.TW", "TcpExt.TWKilled", "TcpExt.TWRecycled",
	"TcpExt.TCPTimeWaitOverflow", "TcpExt.TCPAbortOnClose", "TcpExt.TCPAbortOnData",
	"TcpExt.TCPAbortOnMemory", "TcpExt.TCPAbortOnTimeout", "TcpExt.ListenOverflows",
	"TcpExt.ListenDrops", "Tcp.OutRsts", "Tcp.EstabResets",
}

// watchStates are the table's columns, in the order a close goes through.
var watchStates = []int{
	StateListen, StateSynRecv, StateEstablished, StateFinWait1, StateFinWait2,
	StateClosing, StateTimeWait, StateCloseWait, StateLastAck,
}

// maxWatchPorts bounds the rows found from listening ports.
const maxWatchPorts = 32

// WatchRow is one port's sockets (local or remote port); Port 0 is the row
// of every socket the watch counts.
type WatchRow struct {
	Port   uint16
	Counts Counts
}

// WatchFrame is one refresh of the watch view.
type WatchFrame struct {
	T      time.Time
	Source string
	Rows   []WatchRow
	// Rates are counter changes per second since the previous frame; nil
	// on the first frame.
	Rates map[string]float64
	// Events are the kernel's transitions and resets per second for each
	// watched port, counted by the eBPF tracer since the previous frame;
	// nil on the first frame or without the tracer.
	Events []WatchEvents
	// Err is a source failure this frame; the view shows it and goes on.
	Err error
}

// WatchEvents is one port's kernel events per second (both sides).
type WatchEvents struct {
	Port                                                       uint16
	Transitions, ResetsSent, ResetsReceived, TimeWaitHandovers float64
}

// Watcher produces watch frames: one dump of socket states, tallied per
// port, and one read of the counters per frame.
type Watcher struct {
	src      *StateSource
	counters *counterReader
	explicit bool
	table    *portTable
	prev     map[string]int64
	cur      map[string]int64
	prevT    time.Time
	notes    []string

	// The tracer follows the rows' ports; it is reopened when they change.
	cfg         WatchConfig
	tracer      *Tracer
	tracerPorts []uint16
	tracerTried bool
	prevTotals  []TracerTotals
	prevTotalsT time.Time
}

// NewWatcher validates cfg and opens the sources.
func NewWatcher(cfg WatchConfig) (*Watcher, error) {
	src, err := OpenStateSource(StateQuery{ProcRoot: cfg.ProcRoot, Source: cfg.Source, Ports: cfg.Ports, NetnsPath: cfg.NetnsPath})
	if err != nil {
		return nil, err
	}
	w := &Watcher{
		cfg:      cfg,
		src:      src,
		counters: newCounterReader(cfg.ProcRoot),
		explicit: len(cfg.Ports) > 0,
		table:    newPortTable(cfg.Ports),
		cur:      map[string]int64{},
	}
	if r := src.FallbackReason(); r != "" {
		w.notes = append(w.notes, r)
	}
	if len(cfg.Ports) > 0 {
		if err := w.follow(cfg.Ports); err != nil {
			src.Close()
			return nil, err
		}
	}
	return w, nil
}

// Notes returns, once, remarks to show the user (a fallback to /proc).
func (w *Watcher) Notes() []string {
	n := append(w.notes, w.src.TakeNotes()...)
	w.notes = nil
	return n
}

// Close releases the sources.
func (w *Watcher) Close() error {
	if w.tracer != nil {
		w.tracer.Close()
	}
	return w.src.Close()
}

// follow (re)opens the tracer for ports when the source allows it: with
// "ebpf" a tracer that cannot open is an error, with "auto" a note once.
func (w *Watcher) follow(ports []uint16) error {
	src := w.cfg.Source
	if src != "" && src != SourceAuto && src != SourceEBPF {
		return nil
	}
	if w.tracer != nil && slices.Equal(ports, w.tracerPorts) {
		return nil
	}
	if w.tracerTried && w.tracer == nil {
		return nil // refused once: the reason (privilege, kernel) stays
	}
	if w.tracer != nil {
		w.tracer.Close()
		w.tracer = nil
	}
	w.prevTotals = nil
	w.tracerPorts = append(w.tracerPorts[:0], ports...)
	if len(ports) == 0 {
		return nil
	}
	tc := TracerConfig{NetnsPath: w.cfg.NetnsPath}
	for _, p := range ports[:min(len(ports), MaxTracerTargets)] {
		tc.Targets = append(tc.Targets, TracerTarget{Port: p})
	}
	t, err := OpenTracer(tc)
	if err != nil {
		if src == SourceEBPF {
			return err
		}
		if !w.tracerTried {
			w.notes = append(w.notes, "kernel events not shown: "+err.Error())
		}
		w.tracerTried = true
		return nil
	}
	w.tracerTried = true
	w.tracer = t
	if len(ports) > MaxTracerTargets {
		w.notes = append(w.notes, fmt.Sprintf("kernel events for the first %d ports only", MaxTracerTargets))
	}
	return nil
}

// events computes the per-second kernel events since the previous frame.
func (w *Watcher) events(now time.Time) ([]WatchEvents, error) {
	if w.tracer == nil {
		return nil, nil
	}
	tot, err := w.tracer.Totals()
	if err != nil {
		return nil, err
	}
	prev, prevT := w.prevTotals, w.prevTotalsT
	w.prevTotals, w.prevTotalsT = tot, now
	dt := now.Sub(prevT).Seconds()
	if prev == nil || len(prev) != len(tot) || dt <= 0 {
		return nil, nil
	}
	out := make([]WatchEvents, len(tot))
	for i, c := range tot {
		p := prev[i]
		out[i] = WatchEvents{Port: c.Port,
			Transitions:       float64(c.Transitions-p.Transitions) / dt,
			ResetsSent:        float64(c.ResetsSent-p.ResetsSent) / dt,
			ResetsReceived:    float64(c.ResetsReceived-p.ResetsReceived) / dt,
			TimeWaitHandovers: float64(c.TimeWaitHandovers-p.TimeWaitHandovers) / dt,
		}
	}
	return out, nil
}

// Step counts sockets and reads counters once.
func (w *Watcher) Step() WatchFrame {
	f := WatchFrame{T: time.Now()}
	fallback := w.src.FallbackReason()
	err := w.countTable()
	if r := w.src.FallbackReason(); r != fallback {
		w.notes = append(w.notes, r)
	}
	f.Source = w.src.Name()
	if err != nil {
		f.Err = err
	} else {
		f.Rows = w.table.rows()
		if !w.explicit {
			if err := w.follow(w.table.ports); err != nil {
				f.Err = err
			}
		}
	}
	if ev, err := w.events(f.T); err != nil && f.Err == nil {
		f.Err = err
	} else {
		f.Events = ev
	}
	clear(w.cur)
	if _, err := w.counters.read(w.cur); err != nil && f.Err == nil {
		f.Err = err
	}
	if w.prev != nil && len(w.cur) > 0 {
		dt := f.T.Sub(w.prevT).Seconds()
		f.Rates = make(map[string]float64, len(WatchCounters))
		for _, k := range WatchCounters {
			v, ok1 := w.cur[k]
			p, ok2 := w.prev[k]
			if ok1 && ok2 && dt > 0 {
				f.Rates[k] = float64(v-p) / dt
			}
		}
	}
	if len(w.cur) > 0 {
		if w.prev == nil {
			w.prev = map[string]int64{}
		}
		clear(w.prev)
		for k, v := range w.cur {
			w.prev[k] = v
		}
		w.prevT = f.T
	}
	return f
}

// countTable dumps once into the table; without explicit ports it adopts
// the listening ports it saw and, when they changed, dumps once more.
func (w *Watcher) countTable() error {
	w.table.reset()
	if err := w.src.countInto(w.table, &w.table.all); err != nil {
		return err
	}
	if w.explicit || !w.table.adoptListening() {
		return nil
	}
	w.table.reset()
	return w.src.countInto(w.table, &w.table.all)
}

// portTable tallies sockets per watched port without allocating per socket.
type portTable struct {
	index     []int32 // port -> row+1; 0 = not watched
	ports     []uint16
	counts    []Counts
	all       Counts
	listening *portSet // ports seen listening in the last dump
}

func newPortTable(ports []uint16) *portTable {
	t := &portTable{index: make([]int32, 65536), listening: &portSet{}}
	t.setPorts(ports)
	return t
}

func (t *portTable) setPorts(ports []uint16) {
	for _, p := range t.ports {
		t.index[p] = 0
	}
	t.ports = append(t.ports[:0], ports...)
	sort.Slice(t.ports, func(i, j int) bool { return t.ports[i] < t.ports[j] })
	t.counts = make([]Counts, len(t.ports))
	for i, p := range t.ports {
		t.index[p] = int32(i + 1)
	}
}

func (t *portTable) add(state uint8, owned bool, lport, rport uint16) {
	t.all.add(state, owned, lport, rport)
	if state == StateListen {
		t.listening.bits[lport>>6] |= 1 << (lport & 63)
	}
	if i := t.index[lport]; i > 0 {
		t.counts[i-1].add(state, owned, lport, rport)
	}
	if rport != lport {
		if i := t.index[rport]; i > 0 {
			t.counts[i-1].add(state, owned, lport, rport)
		}
	}
}

func (t *portTable) reset() {
	t.all = Counts{}
	for i := range t.counts {
		t.counts[i] = Counts{}
	}
	t.listening.bits = [1024]uint64{}
}

// adoptListening makes the listening ports the rows; it reports whether
// they changed.
func (t *portTable) adoptListening() bool {
	var ports []uint16
	for i, word := range t.listening.bits {
		for word != 0 && len(ports) < maxWatchPorts {
			b := uint16(0)
			for word&(1<<b) == 0 {
				b++
			}
			ports = append(ports, uint16(i)<<6|b)
			word &^= 1 << b
		}
	}
	if len(ports) == len(t.ports) {
		same := true
		for i := range ports {
			same = same && ports[i] == t.ports[i]
		}
		if same {
			return false
		}
	}
	t.setPorts(ports)
	return true
}

func (t *portTable) rows() []WatchRow {
	rows := make([]WatchRow, 0, len(t.ports)+1)
	for i, p := range t.ports {
		rows = append(rows, WatchRow{Port: p, Counts: t.counts[i]})
	}
	return append(rows, WatchRow{Port: 0, Counts: t.all})
}

// Data is the frame as plain data, for the renderers and JSON.
func (f WatchFrame) Data() results.WatchFrame {
	d := results.WatchFrame{T: f.T, Source: f.Source}
	for _, r := range f.Rows {
		row := results.WatchRow{Port: r.Port}
		for _, st := range watchStates {
			row.States = append(row.States, results.WatchState{State: StateNames[st], Total: r.Counts.Total[st], Orphaned: r.Counts.Orphaned[st]})
		}
		d.Rows = append(d.Rows, row)
	}
	if f.Rates != nil {
		d.Rates = make([]results.WatchRate, 0, len(WatchCounters))
		for _, k := range WatchCounters {
			d.Rates = append(d.Rates, results.WatchRate{Counter: k, PerSecond: f.Rates[k]})
		}
	}
	for _, e := range f.Events {
		d.Events = append(d.Events, results.WatchEvents{Port: e.Port, Transitions: e.Transitions, ResetsSent: e.ResetsSent,
			ResetsReceived: e.ResetsReceived, TimeWaitHandovers: e.TimeWaitHandovers})
	}
	if f.Err != nil {
		d.Err = f.Err.Error()
	}
	return d
}
