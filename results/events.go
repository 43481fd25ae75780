package results

import (
	"fmt"
	"sort"
)

// Sides of a connection, as KernelEvents and Sample.Sides name them: a
// socket whose local port is a target port is the target's, one whose
// remote port is a target port the client's.
const (
	SideClient = "client"
	SideTarget = "target"
)

// KernelEvents is what the kernel itself announced about the run's sockets:
// every TCP state transition and reset, counted in the kernel by the eBPF
// tracer, with the time each connection spent in each state.
type KernelEvents struct {
	// Source is "ebpf".
	Source string `json:"source"`
	// Groups holds one entry per scenario and side, sorted by scenario then
	// side.
	Groups []EventGroup `json:"groups,omitempty"`
	// Methods says, per figure ("transitions", "dwell", "resets",
	// "reset_reasons", "time_wait_handovers", "time_wait_lifetime"), how it
	// was obtained or why it was not.
	Methods map[string]string `json:"methods,omitempty"`
	// Untracked counts transitions whose connection the kernel-side table
	// could not hold (full), so their dwell is missing; counts stay exact.
	Untracked uint64 `json:"untracked,omitempty"`
	// Missed counts events the kernel did not run the tracer's programs
	// for, because another BPF program was running on that CPU (the
	// kernel's recursion guard, which a loaded machine meets when a
	// softirq interrupts a program): every count may be low by up to
	// this many.
	Missed uint64 `json:"missed,omitempty"`
}

// EventGroup is one scenario's sockets on one side.
type EventGroup struct {
	Scenario string `json:"scenario"`
	Side     string `json:"side"`
	// Port is the target port that identifies the group.
	Port uint16 `json:"port,omitempty"`
	// Transitions counts old -> new state changes, sorted by From then To.
	Transitions []Transition `json:"transitions,omitempty"`
	// Dwell maps a state to the time connections spent in it, from entering
	// it to leaving it (same histogram geometry as the phases). TIME_WAIT
	// and FIN_WAIT2_ORPHAN are the lifetimes of timewait mini-sockets (an
	// orphaned FIN_WAIT2 is handed to one, for tcp_fin_timeout), from the
	// hand-over to the end of the mini-socket.
	Dwell map[string]Phase `json:"dwell,omitempty"`
	// ResetsSent and ResetsReceived count RSTs by the socket's state when
	// the kernel sent or received them ("UNKNOWN": no socket). An abortive
	// close (SO_LINGER 0, close with unread data) moves the socket to CLOSE
	// just before its RST; it counts under the state the socket left.
	ResetsSent     map[string]uint64 `json:"resets_sent,omitempty"`
	ResetsReceived map[string]uint64 `json:"resets_received,omitempty"`
	// ResetReasons counts sent RSTs by the kernel's enum sk_rst_reason name.
	ResetReasons map[string]uint64 `json:"reset_reasons,omitempty"`
	// TimeWaitHandovers counts full sockets handed to a timewait
	// mini-socket, by the state they left (FIN_WAIT2, CLOSING).
	TimeWaitHandovers map[string]uint64 `json:"time_wait_handovers,omitempty"`
	// TimeWaitKilled counts timewait mini-sockets that ended before their
	// timer, by their state (TIME_WAIT, StateOrphanFinWait2): taken over by a
	// new connection of the same addresses and ports (tcp_tw_reuse, a SYN
	// accepted in TIME_WAIT), reset, or their namespace deleted. Their
	// lifetime is in Dwell with the ones that expired.
	TimeWaitKilled map[string]uint64 `json:"time_wait_killed,omitempty"`
	// TimeWaitOpen counts the mini-sockets still alive when the events were
	// read, by state: their lifetime is not in Dwell (a run shorter than
	// TIME_WAIT's 60 s ends with all of them open).
	TimeWaitOpen map[string]uint64 `json:"time_wait_open,omitempty"`
}

// MethodNotMeasured begins a KernelEvents.Methods entry whose figure was
// not obtained; the rest says why.
const MethodNotMeasured = "not measured: "

// StateOrphanFinWait2 names, in EventGroup's Dwell, TimeWaitKilled and
// TimeWaitOpen, timewait mini-sockets in FIN_WAIT2: orphans (closed by
// their application, not yet by the peer) handed over for tcp_fin_timeout.
// It keeps them apart from a full socket's FIN_WAIT2, the wait before the
// hand-over. Mini-sockets in TIME_WAIT are "TIME_WAIT", which full sockets
// never dwell in.
const StateOrphanFinWait2 = "FIN_WAIT2_ORPHAN"

// Transition is one kind of state change and how often it happened.
type Transition struct {
	From  string `json:"from"`
	To    string `json:"to"`
	Count uint64 `json:"count"`
}

// Count returns how often the group went from one state to another.
func (g EventGroup) Count(from, to string) uint64 {
	for _, t := range g.Transitions {
		if t.From == from && t.To == to {
			return t.Count
		}
	}
	return 0
}

// Group returns the group of a scenario and side, or nil.
func (ev *KernelEvents) Group(scenario, side string) *EventGroup {
	if ev == nil {
		return nil
	}
	for i := range ev.Groups {
		if ev.Groups[i].Scenario == scenario && ev.Groups[i].Side == side {
			return &ev.Groups[i]
		}
	}
	return nil
}

// MergeKernelEvents sums the events of shards of one run: counts add up and
// dwell histograms merge exactly. Methods are kept from the first shard that
// states one; nil inputs are skipped, and all nil gives nil.
func MergeKernelEvents(parts ...*KernelEvents) (*KernelEvents, error) {
	var out *KernelEvents
	idx := map[[2]string]int{}
	for _, p := range parts {
		if p == nil {
			continue
		}
		if out == nil {
			out = &KernelEvents{Source: p.Source, Methods: map[string]string{}}
		}
		for k, v := range p.Methods {
			if _, ok := out.Methods[k]; !ok {
				out.Methods[k] = v
			}
		}
		out.Untracked += p.Untracked
		out.Missed += p.Missed
		for _, g := range p.Groups {
			key := [2]string{g.Scenario, g.Side}
			i, ok := idx[key]
			if !ok {
				i = len(out.Groups)
				idx[key] = i
				out.Groups = append(out.Groups, EventGroup{Scenario: g.Scenario, Side: g.Side, Port: g.Port})
			}
			if err := out.Groups[i].add(g); err != nil {
				return nil, fmt.Errorf("kernel events %s/%s: %w", g.Scenario, g.Side, err)
			}
		}
	}
	if out == nil {
		return nil, nil
	}
	if len(out.Methods) == 0 {
		out.Methods = nil
	}
	sort.Slice(out.Groups, func(i, j int) bool {
		a, b := out.Groups[i], out.Groups[j]
		if a.Scenario != b.Scenario {
			return a.Scenario < b.Scenario
		}
		return a.Side < b.Side
	})
	return out, nil
}

func (g *EventGroup) add(o EventGroup) error {
	tr := map[[2]string]uint64{}
	for _, t := range g.Transitions {
		tr[[2]string{t.From, t.To}] += t.Count
	}
	for _, t := range o.Transitions {
		tr[[2]string{t.From, t.To}] += t.Count
	}
	g.Transitions = SortTransitions(tr)
	g.ResetsSent = addCounts(g.ResetsSent, o.ResetsSent)
	g.ResetsReceived = addCounts(g.ResetsReceived, o.ResetsReceived)
	g.ResetReasons = addCounts(g.ResetReasons, o.ResetReasons)
	g.TimeWaitHandovers = addCounts(g.TimeWaitHandovers, o.TimeWaitHandovers)
	g.TimeWaitKilled = addCounts(g.TimeWaitKilled, o.TimeWaitKilled)
	g.TimeWaitOpen = addCounts(g.TimeWaitOpen, o.TimeWaitOpen)
	for state, ph := range o.Dwell {
		if g.Dwell == nil {
			g.Dwell = map[string]Phase{}
		}
		cur, ok := g.Dwell[state]
		if !ok {
			g.Dwell[state] = ph
			continue
		}
		a, err := DecodeHistogram(cur.Histogram)
		if err != nil {
			return fmt.Errorf("dwell %s: %w", state, err)
		}
		b, err := DecodeHistogram(ph.Histogram)
		if err != nil {
			return fmt.Errorf("dwell %s: %w", state, err)
		}
		a.Merge(b)
		m, err := Summarize(a)
		if err != nil {
			return err
		}
		g.Dwell[state] = m
	}
	return nil
}

// SortTransitions turns counts keyed by {from, to} into the record's sorted
// list, dropping zeros.
func SortTransitions(m map[[2]string]uint64) []Transition {
	var out []Transition
	for k, v := range m {
		if v > 0 {
			out = append(out, Transition{From: k[0], To: k[1], Count: v})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].From != out[j].From {
			return out[i].From < out[j].From
		}
		return out[i].To < out[j].To
	})
	return out
}

func addCounts(a, b map[string]uint64) map[string]uint64 {
	if len(b) == 0 {
		return a
	}
	if a == nil {
		a = make(map[string]uint64, len(b))
	}
	for k, v := range b {
		a[k] += v
	}
	return a
}
