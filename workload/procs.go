package workload

import (
	"runtime"
	"sync"
)

// Workers and acceptors block in the kernel (connect, read, accept), like
// the threads of a C client, and each should have a P of its own: a
// goroutine blocked in a system call keeps its P until sysmon retakes it
// (20 µs at best), and runnable workers queue behind it. Measured with
// vs-limit, 8 workers reached 0.63 of crr at GOMAXPROCS=2 and 0.83 with a P
// each. So every pool and target reserves Ps before starting goroutines.
var (
	procsMu  sync.Mutex
	reserved int
	// before is GOMAXPROCS as it was when the first reservation was made;
	// it comes back when the last one is given back.
	before int
	// peakProcs is the highest GOMAXPROCS a reservation set.
	peakProcs int
)

// PeakGOMAXPROCS is the highest GOMAXPROCS the load has run with in this
// process, for the record (GOMAXPROCS itself is back to its old value once
// the load ends).
func PeakGOMAXPROCS() int {
	procsMu.Lock()
	defer procsMu.Unlock()
	return max(peakProcs, runtime.GOMAXPROCS(0))
}

// procsHeadroom leaves Ps for the goroutines that do not block: the sampler,
// timers, the holder, the caller.
const procsHeadroom = 4

// reserveProcs raises GOMAXPROCS so that n more blocking goroutines each
// have a P. While reservations are held it never lowers GOMAXPROCS; when
// the last is given back, GOMAXPROCS returns to what it was before the
// first, so a process that ran a load (a test binary, a user's benchmark)
// is left as it was: `go test` would otherwise warn that a test left
// GOMAXPROCS changed, and benchmark names would carry the raised value.
// The returned func gives the reservation back.
func reserveProcs(n int) (release func()) {
	procsMu.Lock()
	defer procsMu.Unlock()
	if reserved == 0 {
		before = runtime.GOMAXPROCS(0)
	}
	reserved += n
	if want := reserved + procsHeadroom; want > runtime.GOMAXPROCS(0) {
		runtime.GOMAXPROCS(want)
	}
	peakProcs = max(peakProcs, runtime.GOMAXPROCS(0))
	var once sync.Once
	return func() {
		once.Do(func() {
			procsMu.Lock()
			defer procsMu.Unlock()
			reserved -= n
			if reserved == 0 && before > 0 {
				runtime.GOMAXPROCS(before)
			}
		})
	}
}
