package runner

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/closeload/closeload/results"
)

// Exit statuses of a run, as scripts and CI read them.
const (
	ExitOK        = 0 // the run did its work and every threshold held
	ExitFailed    = 1 // the run failed, or its record could not be written
	ExitUsage     = 2 // what was asked for is not valid
	ExitThreshold = 3 // the run worked, a threshold failed
)

// ExitCode is the exit status for a run's record and error: usage errors
// 2, a signal 128+its number (130 for SIGINT, 143 for SIGTERM), a failed
// run 1, a failed threshold 3, else 0.
func ExitCode(rec *results.Run, err error) int {
	if errors.Is(err, ErrUsage) {
		return ExitUsage
	}
	var sig *SignalError
	if errors.As(err, &sig) {
		return 128 + int(sig.Signal)
	}
	if rec != nil && rec.Verdict != nil {
		switch rec.Verdict.Status {
		case results.VerdictInterrupted:
			if s, ok := interruptSignal(rec); ok {
				return 128 + int(s)
			}
			return 128 + int(syscall.SIGINT)
		case results.VerdictFailed:
			return ExitFailed
		case results.VerdictThreshold:
			if err == nil {
				return ExitThreshold
			}
		}
	}
	if err != nil {
		return ExitFailed
	}
	return ExitOK
}

// interruptSignal finds the signal named in an interrupted record.
func interruptSignal(r *results.Run) (syscall.Signal, bool) {
	for _, s := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT} {
		if r.InterruptReason == (&SignalError{Signal: s}).Error() {
			return s, true
		}
	}
	return 0, false
}

// judge sets the record's verdict: interrupted by a signal, failed (the
// run's own error, a shard that failed, nothing completed), a threshold
// failed, or ok.
func judge(r *results.Run, p *Plan, runErr error) {
	v := &results.Verdict{Status: results.VerdictOK}
	for _, t := range p.Thresholds {
		v.Thresholds = append(v.Thresholds, t.Evaluate(r))
	}
	var sig *SignalError
	switch {
	case errors.As(runErr, &sig):
		v.Status = results.VerdictInterrupted
		v.Reasons = append(v.Reasons, sig.Error())
	case errors.Is(runErr, context.Canceled):
		v.Status = results.VerdictInterrupted
		v.Reasons = append(v.Reasons, "interrupted: "+runErr.Error())
	case runErr != nil:
		v.Status = results.VerdictFailed
		v.Reasons = append(v.Reasons, runErr.Error())
	case r.Interrupted:
		v.Status = results.VerdictFailed
		v.Reasons = append(v.Reasons, r.InterruptReason)
	}
	if completed(r) == 0 && v.Status != results.VerdictInterrupted {
		v.Status = results.VerdictFailed
		v.Reasons = append(v.Reasons, fmt.Sprintf("no connection completed (%d attempts)", r.Totals.Attempts))
	}
	if v.Status == results.VerdictOK {
		for _, t := range v.Thresholds {
			if !t.Held {
				v.Status = results.VerdictThreshold
			}
		}
	}
	r.Verdict = v
}

// completed counts what the run finished: cycles, or a storm's closes.
func completed(r *results.Run) uint64 {
	if r.Storm != nil {
		return r.Storm.Closed + r.Totals.Cycles
	}
	return r.Totals.Cycles
}
