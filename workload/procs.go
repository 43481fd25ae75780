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
)

// procsHeadroom leaves Ps for the goroutines that do not block: the sampler,
// timers, the holder, the caller.
const procsHeadroom = 4

// reserveProcs raises GOMAXPROCS so that n more blocking goroutines each
// have a P. It never lowers GOMAXPROCS: a running process cannot know what
// else relies on it. The returned func gives the reservation back.
func reserveProcs(n int) (release func()) {
	procsMu.Lock()
	defer procsMu.Unlock()
	reserved += n
	if want := reserved + procsHeadroom; want > runtime.GOMAXPROCS(0) {
		runtime.GOMAXPROCS(want)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			procsMu.Lock()
			reserved -= n
			procsMu.Unlock()
		})
	}
}
