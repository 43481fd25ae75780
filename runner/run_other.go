//go:build !linux

package runner

import (
	"context"
	"errors"

	"github.com/closeload/closeload/results"
)

// ErrUnsupported is returned by Run where closeload cannot make load: the
// engine uses Linux system calls. Records and reports work everywhere.
var ErrUnsupported = errors.New("runs need Linux: the engine uses Linux system calls (records and reports work on any system)")

// Run validates the plan and refuses to run it.
func Run(ctx context.Context, p *Plan, out Output) (*results.Run, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return nil, ErrUnsupported
}

// ServeChild marks the binary as one that serves child runs; there are none
// on this system.
func ServeChild() (code int, served bool) {
	reexecReady.Store(true)
	return 0, false
}
