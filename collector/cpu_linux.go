package collector

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// cpuCost runs f on a locked thread and returns the CPU time that thread
// spent, kernel time included: a sock_diag dump is kernel work done in the
// calling thread. The sampler's budget is a share of a core, and under load
// (a storm of 27 processes on 2 cores) wall time overstated one count's
// cost by an order of magnitude and stopped state sampling altogether.
func cpuCost(f func()) time.Duration {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	t0, ok0 := threadCPU()
	w0 := time.Now()
	f()
	t1, ok1 := threadCPU()
	if !ok0 || !ok1 {
		return time.Since(w0)
	}
	return t1 - t0
}

func threadCPU() (time.Duration, bool) {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
