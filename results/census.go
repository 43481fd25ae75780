package results

// Census is what a run found in its network namespace before it started,
// when it did not have a fresh one: sockets earlier runs or other programs
// left on its ports, and how full the namespace's TIME_WAIT table was. The
// run's own figures are read against it.
type Census struct {
	// Ports holds the sockets on the run's ports at the start, by state.
	Ports map[string]StateCount `json:"ports,omitempty"`
	// TimeWait is the namespace's TIME_WAIT sockets (sockstat tw) and
	// MaxTimeWait its cap (net.ipv4.tcp_max_tw_buckets): beyond the cap a
	// closing socket skips TIME_WAIT (TCPTimeWaitOverflow).
	TimeWait    int64 `json:"time_wait"`
	MaxTimeWait int64 `json:"max_time_wait,omitempty"`
}
