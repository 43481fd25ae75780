package runner

import (
	"encoding/json"
	"errors"
	"sync/atomic"
	"time"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/results"
)

// A run that happens in another process — in a fresh network namespace, or
// as one shard of several processes — is that process re-executing this
// binary as a child. The parent hands the child its plan and the child
// hands back its record, both as data:
//
//   - descriptor 3 of the child reads from the parent: one JSON line, the
//     childRequest, then control lines (childControl: start and close
//     times of a storm's shards); its end means the parent is gone;
//   - descriptor 4 writes to the parent: JSON lines (childMessage) saying
//     it listens, it opened its storm, its live counts every interval, and
//     last its result: the record, or the error that stopped it.
//
// The binary opts in by calling ServeChild first thing in main (the
// closeload command does; a test binary does it in TestMain through the
// closeload package's hook): a binary that does not would, re-executed,
// run something else, so a run never re-executes one.

// childEnv names the role of a child process in its environment.
const childEnv = "CLOSELOAD_CHILD"

// The roles of a child.
const (
	roleIsolated = "isolated" // the whole run, in a fresh network namespace
	roleShard    = "shard"    // one shard of a run of several processes
)

// childRequest is the first line a child reads.
type childRequest struct {
	Plan Plan `json:"plan"`
}

// childControl is a line from the parent after the request.
type childControl struct {
	Ev string    `json:"ev"` // start, close
	At time.Time `json:"at"`
}

// childMessage is a line from the child.
type childMessage struct {
	// Ev is listening, opened, status or result.
	Ev     string                    `json:"ev"`
	Counts *collector.WorkloadCounts `json:"counts,omitempty"`
	Result *childResult              `json:"result,omitempty"`
}

// childResult is what a child's run produced.
type childResult struct {
	Record *results.Run `json:"record,omitempty"`
	// Err is the error that ended the run, if any; Usage says it was in
	// what the plan asked for.
	Err   string `json:"err,omitempty"`
	Usage bool   `json:"usage,omitempty"`
}

// err rebuilds the child's error on the parent's side.
func (r *childResult) err() error {
	switch {
	case r.Err == "":
		return nil
	case r.Usage:
		return &childError{msg: r.Err, usage: true}
	}
	return &childError{msg: r.Err}
}

// childError is an error a child reported.
type childError struct {
	msg   string
	usage bool
}

func (e *childError) Error() string { return e.msg }

// Unwrap makes a child's usage error an ErrUsage.
func (e *childError) Unwrap() error {
	if e.usage {
		return ErrUsage
	}
	return nil
}

// ErrNoReexec marks a run that needs a child process in a binary that
// cannot serve as one: it never called ServeChild (a test binary without
// the closeload TestMain hook).
var ErrNoReexec = errors.New("this binary cannot re-execute itself for an isolated run or several processes: call closeload.TestMain from TestMain (or runner.ServeChild first in main)")

// reexecReady is set by ServeChild: this binary serves child requests, so
// re-executing it is safe.
var reexecReady atomic.Bool

// encodeLine is one JSON line.
func encodeLine(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("runner: encoding a child line: " + err.Error())
	}
	return append(b, '\n')
}
