package runner

import (
	"fmt"
	"math"

	"github.com/closeload/closeload/kernel"
	"github.com/closeload/closeload/sysctl"
	"golang.org/x/sys/unix"
)

// Limits are what bounds a storm on this machine; validation reads them
// through limitsNow, which tests replace.
type Limits struct {
	// Descriptors is RLIMIT_NOFILE (soft; the hard limit when it is higher
	// and may be raised), DescriptorsHard the hard limit.
	Descriptors, DescriptorsHard int
	// PortLow..PortHigh is net.ipv4.ip_local_port_range where the run
	// happens (a fresh namespace has the kernel default).
	PortLow, PortHigh int
	// MemAvailable is /proc/meminfo MemAvailable in bytes; 0 if unknown.
	MemAvailable int64
}

var limitsNow = readLimits

// Kernel default of ip_local_port_range, which a fresh namespace starts with.
const defaultPortLow, defaultPortHigh = 32768, 60999

func readLimits(isolated bool, sysctls []sysctl.Assignment) Limits {
	var l Limits
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil {
		l.Descriptors, l.DescriptorsHard = clampLimit(rl.Cur), clampLimit(rl.Max)
	} else {
		l.Descriptors, l.DescriptorsHard = 1024, 1024
	}
	l.PortLow, l.PortHigh = defaultPortLow, defaultPortHigh
	fs := kernel.NewFS("")
	if !isolated {
		if lo, hi, err := fs.PortRange(); err == nil {
			l.PortLow, l.PortHigh = lo, hi
		}
	}
	for _, a := range sysctls {
		if a.Key == "net.ipv4.ip_local_port_range" {
			if lo, hi, ok := kernel.ParsePortRange(a.Value); ok {
				l.PortLow, l.PortHigh = lo, hi
			}
		}
	}
	if m, err := fs.MemAvailable(); err == nil {
		l.MemAvailable = m
	}
	return l
}

func clampLimit(v uint64) int {
	if v > 1<<30 {
		return 1 << 30
	}
	return int(v)
}

// MaxProcs bounds Plan.Procs: beyond a few hundred processes the machine
// spends its time scheduling them.
const MaxProcs = 256

// Per-process reserve of descriptors (listener, epoll, sampler, stdio, the
// runtime) and of memory (a Go process with its runtime and buffers).
const (
	fdReserve        = 256
	procMemory       = 32 << 20
	kernelPerSocket  = 5 << 10 // measured here: about 5 KB of kernel memory per socket
	userPerSocket    = 1536    // the goal: at most 1.5 KB of user memory per held connection
	memoryHeadroomPc = 80      // use at most this share of MemAvailable
)

// fdsPerProc is the most descriptors one of procs processes needs for a
// storm of n connections: its client's share, and with the built-in target
// its listener's share, which SO_REUSEPORT spreads only on average, so
// with a margin of five standard deviations.
func fdsPerProc(n, procs int, builtin bool) int {
	share := (n + procs - 1) / procs
	need := share + fdReserve
	if builtin {
		need += share
		if procs > 1 {
			need += int(5*math.Sqrt(float64(share))) + share/100
		}
	}
	return need
}

// autoProcs is the fewest processes whose descriptors hold the storm.
func autoProcs(n int, builtin bool, limit int) (int, bool) {
	for p := 1; p <= MaxProcs; p++ {
		if fdsPerProc(n, p, builtin) <= limit {
			return p, true
		}
	}
	return MaxProcs, false
}

// checkStormLimits refuses a storm that descriptors, ports or memory
// cannot hold, naming the limit that binds and how to lift it.
func checkStormLimits(p *Plan, lim Limits) error {
	sp := p.Storm
	n := sp.Mine // this process's connections
	procs := p.Procs
	if p.Shard == nil && procs > 1 {
		n = sp.N
	}
	perConn, with := 1, ""
	if p.Builtin() {
		perConn, with = 2, " with the built-in target"
	}
	if need := fdsPerProc(n, procs, p.Builtin()); need > lim.Descriptors {
		hint := "{Procs} auto"
		if auto, ok := autoProcs(n, p.Builtin(), lim.Descriptors); ok {
			hint = fmt.Sprintf("{Procs} %d (or auto)", auto)
		}
		if p.Shard != nil {
			hint = "more shards"
		}
		hard := ""
		if lim.DescriptorsHard > lim.Descriptors {
			hard = fmt.Sprintf(", or raise the soft limit towards the hard limit %d (ulimit -n)", lim.DescriptorsHard)
		}
		return fieldErr("Storm", "%d: descriptors bind: %d per process with %d process(es) (%d per connection%s, plus %d in reserve), but RLIMIT_NOFILE is %d; use %s%s",
			sp.N, need, procs, perConn, with, fdReserve, lim.Descriptors, hint, hard)
	}
	sources := max(len(p.Sources), 1)
	ports := lim.PortHigh - lim.PortLow + 1
	if capPorts := int64(sources) * int64(ports); int64(sp.N) > capPorts {
		return fieldErr("Storm", "%d: local ports bind: %d source address(es) × %d ports of ip_local_port_range (%d-%d) give %d connections to one target port; add addresses with {Sources} (e.g. 127.0.1.0/24 on loopback) or widen the range ({Sysctls} net.ipv4.ip_local_port_range='1024 65535')",
			sp.N, sources, ports, lim.PortLow, lim.PortHigh, capPorts)
	}
	if lim.MemAvailable > 0 {
		sockets := int64(sp.N) * int64(perConn)
		need := sockets*(kernelPerSocket+userPerSocket) + int64(procs)*procMemory
		if need > lim.MemAvailable*memoryHeadroomPc/100 {
			return fieldErr("Storm", "%d: memory binds: about %d MiB (%d sockets × %d KiB kernel + %d B user, %d processes × %d MiB) exceeds %d%% of the %d MiB available; lower it or spread it over hosts with {Shard}",
				sp.N, need>>20, sockets, kernelPerSocket>>10, userPerSocket, procs, procMemory>>20, memoryHeadroomPc, lim.MemAvailable>>20)
		}
	}
	return nil
}
