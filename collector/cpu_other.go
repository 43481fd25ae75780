//go:build !linux

package collector

import "time"

// cpuCost measures wall time where thread CPU time is not available.
func cpuCost(f func()) time.Duration {
	t0 := time.Now()
	f()
	return time.Since(t0)
}
