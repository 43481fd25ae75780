package runner

import (
	"context"
	"fmt"
	"io"
	"time"
)

// liveLine redraws one status line on a terminal every second until ctx
// ends, then clears it; line gets the time since the start.
func liveLine(ctx context.Context, w io.Writer, line func(elapsed time.Duration) string) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprint(w, "\r\033[K")
			return
		case <-tick.C:
		}
		fmt.Fprint(w, "\r\033[K"+line(time.Since(start)))
	}
}
