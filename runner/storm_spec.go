package runner

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/closeload/closeload/results"
	"github.com/closeload/closeload/workload"
	"golang.org/x/sys/unix"
)

// StormSpec holds the flags of the storm shape and of runs beyond one
// process, as the user gave them.
type StormSpec struct {
	// Storm > 0 makes the run a storm: open Storm connections, hold them
	// for --hold, then half-close them all within StormWindow.
	Storm       int
	StormWindow time.Duration
	// Closer is client, server or both; empty: the scenario's own.
	Closer string
	// Procs is a number of processes or "auto" (from the descriptor
	// limit); empty or "1": this process alone.
	Procs string
	// StormCloseAt (RFC 3339) fixes the close time, so that shards on
	// several hosts close together; empty: --hold after the opening.
	StormCloseAt string
	// ReusePort lets the built-in targets of the processes of one run
	// share their port (set by --procs for its children).
	ReusePort bool
}

// StormPlan is a validated storm.
type StormPlan struct {
	// N is this process's connections (its shard's slice); Total the
	// whole storm's.
	N, Total int
	Scenario workload.Scenario
	Closer   workload.Closer
	// CloseAt is --storm-close-at, zero when not given.
	CloseAt time.Time
}

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

func readLimits(isolated bool, sysctls []string) Limits {
	var l Limits
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil {
		l.Descriptors, l.DescriptorsHard = clampLimit(rl.Cur), clampLimit(rl.Max)
	} else {
		l.Descriptors, l.DescriptorsHard = 1024, 1024
	}
	l.PortLow, l.PortHigh = defaultPortLow, defaultPortHigh
	if !isolated {
		if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
			if lo, hi, ok := parsePortRange(string(b)); ok {
				l.PortLow, l.PortHigh = lo, hi
			}
		}
	}
	for _, a := range sysctls {
		if v, ok := strings.CutPrefix(a, "net.ipv4.ip_local_port_range="); ok {
			if lo, hi, ok := parsePortRange(v); ok {
				l.PortLow, l.PortHigh = lo, hi
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				l.MemAvailable = kb << 10
			}
		}
	}
	return l
}

func clampLimit(v uint64) int {
	if v > 1<<30 {
		return 1 << 30
	}
	return int(v)
}

func parsePortRange(s string) (lo, hi int, ok bool) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, 0, false
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	return lo, hi, err1 == nil && err2 == nil && lo > 0 && lo <= hi && hi <= 65535
}

// ProcsAuto is the Procs value that picks the process count from the
// descriptor limit; completion offers it, Validate reads it.
const ProcsAuto = "auto"

// MaxProcs bounds --procs: beyond a few hundred processes the machine
// spends its time scheduling them.
const MaxProcs = 256

// Per-process reserve of descriptors (listener, epoll, sampler, stdio, the
// runtime) and of memory (a Go process with its runtime and buffers).
const (
	fdReserve        = 256
	procMemory       = 32 << 20
	kernelPerSocket  = 5 << 10 // DESIGN: about 5 KB of kernel memory per socket
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

// validateStorm checks the storm and --procs flags and fills p.Storm and
// p.Procs. It runs last in Validate, after the shard slicing.
func (s Spec) validateStorm(p *Plan) error {
	p.Procs = 1
	if s.Storm < 0 {
		return usage("--storm %d: want a number of connections (0 = no storm)", s.Storm)
	}
	if s.Storm == 0 {
		switch {
		case s.Closer != "":
			return usage("--closer needs --storm: only a storm closes every connection at one time")
		case s.StormWindow != 0:
			return usage("--storm-window needs --storm")
		case s.StormCloseAt != "":
			return usage("--storm-close-at needs --storm")
		}
	}
	if s.StormWindow < 0 {
		return usage("--storm-window %v: want zero (all at once) or a positive duration", s.StormWindow)
	}
	isolated := (s.Isolate || len(s.Sysctls) > 0) && !s.HostSysctl
	lim := limitsNow(isolated, s.Sysctls)
	total := s.Storm
	if s.Storm > 0 {
		sp := &StormPlan{Total: total, N: total}
		if s.Scenario == DefaultMix {
			// The default mix is for loops; a storm's default is the
			// half-close idiom from the closer's side.
			def := workload.ClientHalfClose
			switch s.Closer {
			case "server":
				def = workload.ServerHalfClose
			case "both":
				def = workload.Simultaneous
			}
			p.Spec.Scenario = def.String()
			p.Mix = workload.NewMix(def)
		}
		if len(p.Mix.Entries) != 1 {
			return usage("--scenario %s: a storm plays one scenario: client-halfclose, server-halfclose, simultaneous or close-wait-leak", s.Scenario)
		}
		sp.Scenario = p.Mix.Entries[0].Scenario
		def, ok := workload.StormCloser(sp.Scenario)
		if !ok {
			return usage("--scenario %s: a storm plays client-halfclose, server-halfclose, simultaneous or close-wait-leak", sp.Scenario)
		}
		sp.Closer = def
		if s.Closer != "" {
			c, err := workload.ParseCloser(s.Closer)
			if err != nil {
				return usage("--closer: %v", err)
			}
			switch {
			case sp.Scenario == workload.CloseWaitLeak && c == workload.CloserBoth:
				return usage("--closer both: close-wait-leak leaks on the side that receives the FIN; want client or server")
			case sp.Scenario != workload.CloseWaitLeak && c != def:
				return usage("--closer %s contradicts --scenario %s, which closes from %s; drop --closer or choose the scenario (client-halfclose, server-halfclose, simultaneous)", c, sp.Scenario, def)
			}
			sp.Closer = c
		}
		if !p.Builtin && sp.Closer != workload.CloserClient {
			return usage("--closer %s needs the built-in target: an external target closes when it chooses", sp.Closer)
		}
		if s.StormCloseAt != "" {
			t, err := time.Parse(time.RFC3339Nano, s.StormCloseAt)
			if err != nil {
				return usage("--storm-close-at %q: want an RFC 3339 time such as 2026-11-25T10:00:00Z", s.StormCloseAt)
			}
			sp.CloseAt = t
		}
		if p.Shard != nil {
			sp.N = results.ShardSlice(total, p.Shard.Index, p.Shard.Count)
		}
		p.Storm = sp
	}

	// Processes.
	switch s.Procs {
	case "", "1":
	case ProcsAuto:
		n := total
		if n == 0 {
			n = s.Conns
		}
		procs, ok := autoProcs(n, p.Builtin, lim.Descriptors)
		if !ok {
			return usage("--procs auto: %d connections need more than %d processes of %d descriptors each; lower --storm or raise the descriptor limit (ulimit -n)", n, MaxProcs, lim.Descriptors)
		}
		p.Procs = procs
	default:
		n, err := strconv.Atoi(s.Procs)
		if err != nil || n < 1 || n > MaxProcs {
			return usage("--procs %q: want auto or a number of processes from 1 to %d", s.Procs, MaxProcs)
		}
		p.Procs = n
	}
	if p.Shard != nil {
		// A shard is one process; --procs belongs to its parent.
		p.Procs = 1
	}
	if s.Hlog != "" && (s.Storm > 0 || p.Procs > 1) {
		return usage("--hlog: not available for storms or --procs yet; the record holds the merged histograms")
	}
	if p.Procs > 1 && s.Cycles > 0 && s.Storm == 0 && s.Cycles < uint64(p.Procs) {
		return usage("--cycles %d: fewer than --procs %d; every process needs at least one", s.Cycles, p.Procs)
	}
	if s.Storm == 0 {
		return nil
	}
	return checkStormLimits(p, lim)
}

// checkStormLimits refuses a storm that descriptors, ports or memory
// cannot hold, naming the limit that binds and how to lift it.
func checkStormLimits(p *Plan, lim Limits) error {
	sp := p.Storm
	n := sp.N // this process's connections
	procs := p.Procs
	if p.Shard == nil && procs > 1 {
		n = sp.Total
	}
	perConn, with := 1, ""
	if p.Builtin {
		perConn, with = 2, " with the built-in target"
	}
	if need := fdsPerProc(n, procs, p.Builtin); need > lim.Descriptors {
		hint := "--procs auto"
		if auto, ok := autoProcs(n, p.Builtin, lim.Descriptors); ok {
			hint = fmt.Sprintf("--procs %d (or --procs auto)", auto)
		}
		if p.Shard != nil {
			hint = "more shards"
		}
		hard := ""
		if lim.DescriptorsHard > lim.Descriptors {
			hard = fmt.Sprintf(", or raise the soft limit towards the hard limit %d (ulimit -n)", lim.DescriptorsHard)
		}
		return usage("--storm %d: descriptors bind: %d per process with %d process(es) (%d per connection%s, plus %d in reserve), but RLIMIT_NOFILE is %d; use %s%s",
			sp.Total, need, procs, perConn, with, fdReserve, lim.Descriptors, hint, hard)
	}
	sources := max(len(p.Sources), 1)
	ports := lim.PortHigh - lim.PortLow + 1
	if capPorts := int64(sources) * int64(ports); int64(sp.Total) > capPorts {
		return usage("--storm %d: local ports bind: %d source address(es) × %d ports of ip_local_port_range (%d-%d) give %d connections to one target port; add addresses with --source (e.g. --source 127.0.1.0/24 on loopback) or widen the range (--sysctl net.ipv4.ip_local_port_range='1024 65535')",
			sp.Total, sources, ports, lim.PortLow, lim.PortHigh, capPorts)
	}
	if lim.MemAvailable > 0 {
		sockets := int64(sp.Total) * int64(perConn)
		need := sockets*(kernelPerSocket+userPerSocket) + int64(procs)*procMemory
		if need > lim.MemAvailable*memoryHeadroomPc/100 {
			return usage("--storm %d: memory binds: about %d MiB (%d sockets × %d KiB kernel + %d B user, %d processes × %d MiB) exceeds %d%% of the %d MiB available; lower --storm or spread it over hosts with --shard",
				sp.Total, need>>20, sockets, kernelPerSocket>>10, userPerSocket, procs, procMemory>>20, memoryHeadroomPc, lim.MemAvailable>>20)
		}
	}
	return nil
}
