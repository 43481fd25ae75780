package collector

import (
	"errors"
	"fmt"
	"strings"

	"github.com/closeload/closeload/kernel"
	"github.com/closeload/closeload/results"
)

// Kernel TCP state numbers (include/net/tcp_states.h), as package kernel
// names them. They index Counts.
const (
	StateEstablished = kernel.StateEstablished
	StateSynSent     = kernel.StateSynSent
	StateSynRecv     = kernel.StateSynRecv
	StateFinWait1    = kernel.StateFinWait1
	StateFinWait2    = kernel.StateFinWait2
	StateTimeWait    = kernel.StateTimeWait
	StateClose       = kernel.StateClose
	StateCloseWait   = kernel.StateCloseWait
	StateLastAck     = kernel.StateLastAck
	StateListen      = kernel.StateListen
	StateClosing     = kernel.StateClosing
	// stateNewSynRecv is a request socket (SYN received, not yet accepted
	// into the queue); sock_diag and /proc report it as SYN_RECV already, and
	// it is folded into SYN_RECV here too.
	stateNewSynRecv = 12
	// NumStates bounds the state numbers Counts holds (0 is unused).
	NumStates = 12
)

// StateNames maps a kernel state number to the name closeload uses in
// records, summaries and the watch view: the kernel's own name without TCP_.
var StateNames = [NumStates]string{
	StateEstablished: "ESTABLISHED",
	StateSynSent:     "SYN_SENT",
	StateSynRecv:     "SYN_RECV",
	StateFinWait1:    "FIN_WAIT1",
	StateFinWait2:    "FIN_WAIT2",
	StateTimeWait:    "TIME_WAIT",
	StateClose:       "CLOSE",
	StateCloseWait:   "CLOSE_WAIT",
	StateLastAck:     "LAST_ACK",
	StateListen:      "LISTEN",
	StateClosing:     "CLOSING",
}

// allStatesMask asks sock_diag for every state closeload names.
const allStatesMask = uint32(1<<NumStates-1) &^ 1

// ssNames maps ss's spelling of a state to closeload's, for tests and for
// users who paste ss output.
var ssNames = map[string]string{
	"ESTAB": "ESTABLISHED", "SYN-SENT": "SYN_SENT", "SYN-RECV": "SYN_RECV",
	"FIN-WAIT-1": "FIN_WAIT1", "FIN-WAIT-2": "FIN_WAIT2", "TIME-WAIT": "TIME_WAIT",
	"UNCONN": "CLOSE", "CLOSE-WAIT": "CLOSE_WAIT", "LAST-ACK": "LAST_ACK",
	"LISTEN": "LISTEN", "CLOSING": "CLOSING",
}

// StateFromSS translates a state as `ss` prints it (ESTAB, FIN-WAIT-2) into
// closeload's name (ESTABLISHED, FIN_WAIT2); ok is false for anything else.
func StateFromSS(s string) (name string, ok bool) {
	name, ok = ssNames[s]
	return name, ok
}

// ErrBadPort marks a port outside 1-65535: port 0 would match every
// unconnected socket and silently count the wrong thing.
var ErrBadPort = errors.New("port outside 1-65535")

// ValidatePorts checks ports typed by a user (named by what, the flag that
// gave them) and returns them deduplicated in the order given.
func ValidatePorts(flag string, ports []int) ([]uint16, error) {
	out := make([]uint16, 0, len(ports))
	seen := map[int]bool{}
	for _, p := range ports {
		if p < 1 || p > 65535 {
			return nil, fmt.Errorf("%s: %d: %w", flag, p, ErrBadPort)
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, uint16(p))
		}
	}
	return out, nil
}

// Counts tallies sockets by kernel state without allocating per socket. It is
// the fast path behind CountStates and the Sampler.
type Counts struct {
	// Total and Orphaned are indexed by kernel state number.
	Total    [NumStates]uint64
	Orphaned [NumStates]uint64
	// Unknown counts sockets in a state closeload does not name (a newer
	// kernel's), so they are never silently dropped.
	Unknown uint64
	// ParseErrors counts /proc lines that could not be read.
	ParseErrors uint64
}

// add counts one socket; owned is false when it has no inode (no file
// descriptor).
func (c *Counts) add(state uint8, owned bool, _, _ uint16) {
	if state == stateNewSynRecv {
		state = StateSynRecv
	}
	if state == 0 || state >= NumStates {
		c.Unknown++
		return
	}
	c.Total[state]++
	if kernel.Orphaned(state, owned) {
		c.Orphaned[state]++
	}
}

// Reset zeroes c for reuse.
func (c *Counts) Reset() { *c = Counts{} }

// Sockets is the number of sockets counted.
func (c *Counts) Sockets() uint64 {
	var n uint64
	for _, v := range c.Total {
		n += v
	}
	return n + c.Unknown
}

// Get returns the count of one state by name (zero for an unknown name).
func (c *Counts) Get(name string) results.StateCount {
	for i, n := range StateNames {
		if n != "" && n == strings.ToUpper(name) {
			return results.StateCount{Total: c.Total[i], Orphaned: c.Orphaned[i]}
		}
	}
	return results.StateCount{}
}

// Map returns the states that have at least one socket, keyed by name; a
// state absent from the map had none. Unknown states appear as "UNKNOWN".
func (c *Counts) Map() map[string]results.StateCount {
	m := make(map[string]results.StateCount, 8)
	for i, n := range StateNames {
		if n != "" && c.Total[i] > 0 {
			m[n] = results.StateCount{Total: c.Total[i], Orphaned: c.Orphaned[i]}
		}
	}
	if c.Unknown > 0 {
		m["UNKNOWN"] = results.StateCount{Total: c.Unknown}
	}
	return m
}

// sink receives one socket from a source: its state, whether it has an
// inode (a file descriptor) and its local and remote ports. An interface call
// per socket, no allocation.
type sink interface {
	add(state uint8, owned bool, lport, rport uint16)
}
