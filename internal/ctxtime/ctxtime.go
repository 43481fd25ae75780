// Package ctxtime holds the one wait that runs, storms and verify
// experiments all need: sleep, but give up when the context ends (Ctrl-C,
// a stopped run), so no wait outlives what it waits for.
package ctxtime

import (
	"context"
	"time"
)

// Sleep waits for d, or until ctx ends, and then returns ctx's error.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
