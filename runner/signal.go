package runner

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// SignalContext returns a context that ends at the first SIGINT, SIGTERM,
// SIGHUP or SIGQUIT (SIGHUP and SIGQUIT are treated as SIGTERM, so a closed
// terminal or a quit key still writes the record and restores sysctls), and
// a channel that closes at the second: stop at once, without the grace
// period. stop releases the signals.
func SignalContext(parent context.Context) (ctx context.Context, abort <-chan struct{}, stop func()) {
	ctx, cancel := context.WithCancelCause(parent)
	ab := make(chan struct{})
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	done := make(chan struct{})
	go func() {
		n := 0
		for {
			select {
			case <-done:
				return
			case s := <-ch:
				n++
				if n == 1 {
					cancel(&SignalError{Signal: s.(syscall.Signal)})
					continue
				}
				close(ab)
				return
			}
		}
	}()
	var once sync.Once
	return ctx, ab, func() {
		once.Do(func() {
			signal.Stop(ch)
			close(done)
			cancel(nil)
		})
	}
}

// SignalError is the cause of a context ended by a signal.
type SignalError struct{ Signal syscall.Signal }

func (e *SignalError) Error() string { return "interrupted by " + signalName(e.Signal) }

func signalName(s syscall.Signal) string {
	switch s {
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGHUP:
		return "SIGHUP"
	case syscall.SIGQUIT:
		return "SIGQUIT"
	}
	return s.String()
}
