package results

import "time"

// WatchFrame is one refresh of `closeload watch` as plain data: socket
// states per port, counter rates and the kernel's events per second. The
// collector makes it; report renders it as a table, a line or JSON.
type WatchFrame struct {
	T      time.Time  `json:"t"`
	Source string     `json:"source"`
	Rows   []WatchRow `json:"rows"`
	// Rates are counter changes per second since the previous frame, in
	// the order the view shows them; nil on the first frame.
	Rates []WatchRate `json:"rates,omitempty"`
	// Events are the eBPF tracer's events per second per port; nil on the
	// first frame or without the tracer.
	Events []WatchEvents `json:"events,omitempty"`
	// Err is a source failure of this frame; the view shows it and goes on.
	Err string `json:"error,omitempty"`
}

// WatchRow is one port's sockets (local or remote port); Port 0 is the row
// of every socket the watch counts. States are in the order a close goes
// through, every state present (zero included).
type WatchRow struct {
	Port   uint16       `json:"port"`
	States []WatchState `json:"states"`
}

// WatchState is one state's count in a row.
type WatchState struct {
	State    string `json:"state"`
	Total    uint64 `json:"total"`
	Orphaned uint64 `json:"orphaned,omitempty"`
}

// WatchRate is one counter's change per second.
type WatchRate struct {
	Counter   string  `json:"counter"`
	PerSecond float64 `json:"per_second"`
}

// WatchEvents is one port's kernel events per second (both sides).
type WatchEvents struct {
	Port              uint16  `json:"port"`
	Transitions       float64 `json:"transitions"`
	ResetsSent        float64 `json:"resets_sent"`
	ResetsReceived    float64 `json:"resets_received"`
	TimeWaitHandovers float64 `json:"time_wait_handovers"`
}
