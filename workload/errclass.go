package workload

import (
	"errors"
	"syscall"
)

// ErrorClass groups errors the way a user acts on them: a refused target, a
// reset, a timeout, port exhaustion, descriptor exhaustion, a broken pipe, a
// data mismatch (stream-echo) or anything else.
type ErrorClass int

// The error classes, in the order reports list them.
const (
	ErrRefused ErrorClass = iota
	ErrReset
	ErrTimeout
	ErrAddrNotAvailable
	ErrTooManyFiles
	ErrBrokenPipe
	ErrDataMismatch
	ErrOther
	NumErrorClasses
)

// ErrorClassNames are the names classes carry in records and reports.
var ErrorClassNames = [NumErrorClasses]string{
	"refused", "reset", "timeout", "addr-not-available", "too-many-files", "broken-pipe", "data-mismatch", "other",
}

func (c ErrorClass) String() string { return ErrorClassNames[c] }

// ErrMismatch is the error of a stream-echo connection whose echo differs
// from what was sent.
var ErrMismatch = errors.New("echoed data differs from what was sent")

// ErrShortRead is the error of a connection that reached EOF before the
// expected number of bytes.
var ErrShortRead = errors.New("peer closed before sending the whole response")

// Classify maps an error to its class. EADDRINUSE joins EADDRNOTAVAIL: both
// mean no local address/port pair was free; ENOTCONN joins ECONNRESET.
func Classify(err error) ErrorClass {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.ECONNREFUSED:
			return ErrRefused
		case syscall.ECONNRESET, syscall.ECONNABORTED, syscall.ENOTCONN:
			// shutdown() after the peer's reset returns ENOTCONN: the
			// connection is gone for the same reason.
			return ErrReset
		case syscall.ETIMEDOUT, syscall.EAGAIN, syscall.EINPROGRESS:
			return ErrTimeout
		case syscall.EADDRNOTAVAIL, syscall.EADDRINUSE:
			return ErrAddrNotAvailable
		case syscall.EMFILE, syscall.ENFILE:
			return ErrTooManyFiles
		case syscall.EPIPE:
			return ErrBrokenPipe
		}
		return ErrOther
	}
	if errors.Is(err, ErrMismatch) {
		return ErrDataMismatch
	}
	return ErrOther
}
