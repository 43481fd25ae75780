package workload

import (
	"errors"
	"fmt"
	"time"
)

// ErrUnrecoverable is wrapped by the error a run stops with when it meets
// a fault that retrying cannot cure: every port taken, no descriptor left,
// every connection reset or refused. Such a run measures nothing; it must
// end with its reason instead of spinning and reporting success.
var ErrUnrecoverable = errors.New("unrecoverable fault")

// FaultError says why a run was stopped: the error class that went on
// while no connection completed, how many connections it failed and for
// how long nothing completed. It wraps ErrUnrecoverable.
type FaultError struct {
	Class ErrorClass
	// Count is how many connections failed with Class while nothing
	// completed.
	Count uint64
	// Stalled is how long no connection had completed.
	Stalled time.Duration
	// Example is the first message of the class, with its errno text.
	Example string
	// Detail replaces the usual text for a fault found before the run
	// started (not enough descriptors for the configuration).
	Detail string
}

func (e *FaultError) Error() string {
	if e.Detail != "" {
		return fmt.Sprintf("%v: %s: %s", ErrUnrecoverable, e.Class, e.Detail)
	}
	msg := fmt.Sprintf("%v: no connection completed for %v while %d connections failed with %s",
		ErrUnrecoverable, e.Stalled.Round(time.Millisecond), e.Count, e.Class)
	if e.Example != "" {
		msg += " (" + e.Example + ")"
	}
	return msg + "; run stopped"
}

// Unwrap makes errors.Is(err, ErrUnrecoverable) hold.
func (e *FaultError) Unwrap() error { return ErrUnrecoverable }

// isFault reports whether class c is one a closed loop cannot cure by
// retrying at once: it backs off on it, and a run of nothing else stops.
func isFault(c ErrorClass) bool {
	switch c {
	case ErrRefused, ErrReset, ErrAddrNotAvailable, ErrTooManyFiles:
		return true
	}
	return false
}

// Backoff bounds of a worker meeting faults: the pause doubles from
// backoffMin to backoffMax after backoffAfter faults in a row, and a
// completed connection ends it. A healthy run that meets a stray reset
// never pauses.
const (
	backoffAfter = 4
	backoffMin   = time.Millisecond
	backoffMax   = 100 * time.Millisecond
)

// nextBackoff returns the pause after n faults in a row, the last pause
// having been d.
func nextBackoff(n int, d time.Duration) time.Duration {
	if n < backoffAfter {
		return 0
	}
	return min(max(2*d, backoffMin), backoffMax)
}

// DefaultStallTimeout is how long a run may go without a completed
// connection while faults go on before it stops.
const DefaultStallTimeout = 2 * time.Second

// OnRefused says what refusals do to a run.
type OnRefused int

// The refusal policies.
const (
	// RefusedStop: refusals are a fault; a run refused for the stall
	// timeout with nothing completed stops.
	RefusedStop OnRefused = iota
	// RefusedContinue: refusals never stop the run; each stretch of them
	// is recorded as an outage window, so a capacity test can measure a
	// server's restart.
	RefusedContinue
)

// ParseOnRefused parses the refusal policy: stop or continue.
func ParseOnRefused(s string) (OnRefused, error) {
	switch s {
	case "stop", "":
		return RefusedStop, nil
	case "continue":
		return RefusedContinue, nil
	}
	return 0, fmt.Errorf("unknown refusal policy %q: want stop or continue", s)
}

// String is the policy's spelling, as records show it.
func (o OnRefused) String() string {
	if o == RefusedContinue {
		return "continue"
	}
	return "stop"
}

// Outage is a stretch of a run in which the target refused connections
// and none completed: from the first refusal to the first connection that
// completed after it. End is zero when the target still refused at the
// stop.
type Outage struct {
	Start, End time.Time
	// Refused counts the refusals in the window.
	Refused uint64
}

// HoldWaits says how often and how long connections waited for room in a
// full holder: back-pressure from the descriptor bound, which otherwise
// shows only as a falling rate.
type HoldWaits struct {
	Count uint64
	Total time.Duration
}
