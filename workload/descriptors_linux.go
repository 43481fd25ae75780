package workload

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// The engines of one process (pool workers, target acceptors, holders) hold
// at most the descriptor limit less fdReserve: the collector opens files,
// netlink and eBPF descriptors while the load runs, and the runner writes
// its record after it, so descriptors must never all go to connections.
// Each engine claims, before it starts, the most it can hold at once: one
// per worker or acceptor, one per listener, its holder's capacity.
const fdReserve = 64

var (
	fdMu     sync.Mutex
	fdClaims int
)

// fdLimit is the soft RLIMIT_NOFILE now; a large number when unlimited or
// unknown.
func fdLimit() int {
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) != nil || rl.Cur == unix.RLIM_INFINITY || rl.Cur > 1<<30 {
		return 1 << 30
	}
	return int(rl.Cur)
}

// fdRoom is how many descriptors are left to claim.
func fdRoom() int {
	fdMu.Lock()
	defer fdMu.Unlock()
	return fdLimit() - fdReserve - fdClaims
}

// claimFDs claims n descriptors for an engine that holds up to n at once;
// what says what it is, for the error. It fails with a FaultError of class
// too-many-files when the limit less the reserve cannot hold them.
func claimFDs(n int, what string) (release func(), err error) {
	fdMu.Lock()
	defer fdMu.Unlock()
	limit := fdLimit()
	if fdClaims+n > limit-fdReserve {
		return nil, &FaultError{Class: ErrTooManyFiles, Detail: fmt.Sprintf(
			"%s need %d descriptors at once; RLIMIT_NOFILE %d less %d kept for the collector leaves %d (%d already taken): lower the connections or raise the limit",
			what, n, limit, fdReserve, max(limit-fdReserve-fdClaims, 0), fdClaims)}
	}
	fdClaims += n
	var once sync.Once
	return func() {
		once.Do(func() {
			fdMu.Lock()
			fdClaims -= n
			fdMu.Unlock()
		})
	}, nil
}

// holderCapacity bounds a holder to want, to what is left once need more
// descriptors are claimed, and to at least 1.
func holderCapacity(want, need int) int {
	return max(1, min(want, fdRoom()-need))
}
