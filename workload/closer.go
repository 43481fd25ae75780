package workload

import "fmt"

// Closer is the side that sends a storm's FINs at the storm time.
type Closer int

// The closers of a storm.
const (
	CloserClient Closer = iota
	CloserServer
	CloserBoth
)

// ParseCloser parses --closer.
func ParseCloser(s string) (Closer, error) {
	switch s {
	case "client":
		return CloserClient, nil
	case "server":
		return CloserServer, nil
	case "both":
		return CloserBoth, nil
	}
	return 0, fmt.Errorf("unknown closer %q: want client, server or both", s)
}

// String is the --closer spelling, as records and summaries show it.
func (c Closer) String() string {
	switch c {
	case CloserServer:
		return "server"
	case CloserBoth:
		return "both"
	}
	return "client"
}

// StormCloser says whether a storm can play scenario s, and which side
// closes first by default: the half-close scenarios name their closer,
// close-wait-leak leaks on the side that receives the FIN.
func StormCloser(s Scenario) (Closer, bool) {
	switch s {
	case ClientHalfClose, CloseWaitLeak:
		return CloserClient, true
	case ServerHalfClose:
		return CloserServer, true
	case Simultaneous:
		return CloserBoth, true
	}
	return 0, false
}
