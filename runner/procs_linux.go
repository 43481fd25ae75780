package runner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/results"
	"golang.org/x/sys/unix"
)

// procsEngine supervises the shards of a run of several processes: children
// of this binary, shards i/P of one run sharing the built-in target's
// port(s) with SO_REUSEPORT, in this process's network namespace (and so
// under its sysctls). It starts them with their plans, starts and closes a
// storm's shards together, and merges the records they send back with
// results.Merge; a shard that failed is reported missing.
type procsEngine struct {
	p        *Plan
	out      Output
	listen   netip.AddrPort
	portList []uint16
	release  func()
	dir      string // where shard records and logs go ("": nowhere)
	children []*shardChild
	running  atomic.Int32
	closed   sync.Once
}

// shardChild is one child and its log.
type shardChild struct {
	index int
	proc  *childProc
	log   *os.File
	res   *childResult
	err   error
}

func (e *procsEngine) samplerCPU() float64 {
	if e.p.Storm != nil {
		return stormSamplerCPU
	}
	return 0
}

func (e *procsEngine) start(ctx context.Context) error {
	p := e.p
	e.release = func() {}
	if p.Out != "" && p.Out != "-" {
		e.dir = ShardDir(p.Out)
		if err := os.MkdirAll(e.dir, 0o755); err != nil {
			return fmt.Errorf("shard directory: %w", err)
		}
	}
	nports := 1
	if p.Storm == nil {
		nports = len(p.Mix.Entries)
	}
	e.listen = p.Listen
	if p.Builtin() {
		if e.listen.Port() == 0 {
			base, release, err := reservePorts(e.listen.Addr(), nports)
			if err != nil {
				return err
			}
			e.release = release
			e.listen = netip.AddrPortFrom(e.listen.Addr(), base)
		}
		for k := range nports {
			e.portList = append(e.portList, e.listen.Port()+uint16(k))
		}
	} else {
		e.portList = []uint16{p.Target.Port()}
	}
	// Shards of a storm start and close on the parent's word; other runs
	// start at a common time.
	startAt := p.StartAt
	if p.Storm == nil && startAt.IsZero() {
		startAt = time.Now().Add(time.Second + time.Duration(p.Procs)*50*time.Millisecond)
	}
	for i := range p.Procs {
		sp := e.shardPlan(i, startAt)
		c := &shardChild{index: i}
		var stderr = e.out.Stderr
		if e.dir != "" {
			f, err := results.CreateLog(filepath.Join(e.dir, fmt.Sprintf("shard-%d.log", i)))
			if err != nil {
				e.kill()
				return err
			}
			c.log, stderr = f, f
		}
		proc, err := startChild(ctx, sp, roleShard, false, stderr)
		if err != nil {
			if c.log != nil {
				c.log.Close()
			}
			e.kill()
			return fmt.Errorf("start shard %d: %w", i, err)
		}
		c.proc = proc
		e.children = append(e.children, c)
		e.running.Add(1)
	}
	return nil
}

// shardPlan is shard i's plan: the parent's, less what the parent owns
// (processes, isolation, sysctls, outputs), plus its shard and the shared
// port and start time.
func (e *procsEngine) shardPlan(i int, startAt time.Time) *Plan {
	sp := *e.p
	sp.Shard = &results.Shard{Index: i, Count: e.p.Procs}
	sp.Whole = nil
	sp.Procs = 0
	sp.Out, sp.Hlog = "", ""
	sp.Sysctls, sp.HostSysctl, sp.Journal = nil, false, ""
	sp.Netns = NetnsHost // the parent's namespace, already chosen
	sp.Thresholds = nil
	sp.StartAt = startAt
	if e.p.Storm != nil {
		st := *e.p.Storm
		st.CloseAt = time.Time{} // the parent says when
		sp.Storm = &st
	}
	if sp.Builtin() {
		sp.Listen, sp.ReusePort = e.listen, true
	}
	return &sp
}

func (e *procsEngine) ports() []uint16 { return e.portList }

// probe is left to the shards, each of which probes the target.
func (e *procsEngine) probe() error { return nil }

func (e *procsEngine) run(ctx context.Context, abort <-chan struct{}) error {
	var wg sync.WaitGroup
	for _, c := range e.children {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.res, c.err = c.proc.wait()
			e.running.Add(-1)
		}()
	}
	if abort != nil {
		go func() {
			select {
			case <-abort:
				e.kill()
			case <-ctx.Done():
			}
		}()
	}
	if e.p.Storm != nil {
		// Every listener shares the port before anyone dials, so the
		// kernel spreads connections over all of them; every shard has
		// opened before anyone closes.
		if e.awaitAll(ctx, func(c *childProc) chan struct{} { return c.listening }) {
			start := time.Now().Add(20 * time.Millisecond)
			for _, c := range e.children {
				c.proc.tell("start", start)
			}
		}
		if e.awaitAll(ctx, func(c *childProc) chan struct{} { return c.opened }) {
			closeAt := time.Now().Add(e.p.Hold)
			if !e.p.Storm.CloseAt.IsZero() {
				closeAt = e.p.Storm.CloseAt
			}
			for _, c := range e.children {
				c.proc.tell("close", closeAt)
			}
		}
	}
	wg.Wait()
	return nil
}

// awaitAll waits until every child has reached a step (or is gone); false
// when ctx ended first.
func (e *procsEngine) awaitAll(ctx context.Context, step func(*childProc) chan struct{}) bool {
	for _, c := range e.children {
		select {
		case <-step(c.proc):
		case <-c.proc.gone:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

func (e *procsEngine) kill() {
	for _, c := range e.children {
		if c.proc != nil && c.proc.cmd.Process != nil {
			_ = c.proc.cmd.Process.Kill()
		}
	}
}

func (e *procsEngine) live() collector.WorkloadCounts {
	var w collector.WorkloadCounts
	for _, c := range e.children {
		lc := c.proc.counts()
		w.Cycles += lc.Cycles
		w.Errors += lc.Errors
		w.Attempts += lc.Attempts
		w.Held += lc.Held
	}
	return w
}

func (e *procsEngine) line(el time.Duration) string {
	c := e.live()
	return fmt.Sprintf("%5.1fs  %d/%d processes  attempts %d  held %d  done %d  errors %d",
		el.Seconds(), e.running.Load(), e.p.Procs, c.Attempts, c.Held, c.Cycles, c.Errors)
}

func (e *procsEngine) close() {
	e.closed.Do(func() {
		if e.release != nil {
			e.release()
		}
		for _, c := range e.children {
			if c.log != nil {
				c.log.Close()
			}
		}
	})
}

// fill merges the shards' records into rec, keeping each beside it.
func (e *procsEngine) fill(rec *results.Run) error {
	p := e.p
	var recs []*results.Run
	var failed []string
	for _, c := range e.children {
		logNote := ""
		if c.log != nil {
			logNote = " (see " + c.log.Name() + ")"
		}
		if c.err != nil || c.res == nil || c.res.Record == nil {
			why := "no record"
			switch {
			case c.err != nil:
				why = c.err.Error()
			case c.res != nil && c.res.Err != "":
				why = c.res.Err
			}
			failed = append(failed, fmt.Sprintf("shard %d/%d: %s%s", c.index, p.Procs, why, logNote))
			continue
		}
		r := c.res.Record
		if r.Shard == nil || r.Shard.Index != c.index || r.ID != p.RunID {
			failed = append(failed, fmt.Sprintf("shard %d/%d: sent the record of another run%s", c.index, p.Procs, logNote))
			continue
		}
		if c.res.Err != "" {
			failed = append(failed, fmt.Sprintf("shard %d/%d: %s%s", c.index, p.Procs, c.res.Err, logNote))
		}
		if e.dir != "" {
			if err := results.Write(filepath.Join(e.dir, fmt.Sprintf("shard-%d.json", c.index)), r); err != nil {
				return err
			}
		}
		recs = append(recs, r)
	}
	if len(recs) == 0 {
		return fmt.Errorf("every shard failed: %s", strings.Join(failed, "; "))
	}
	merged, missing, err := results.Merge(recs)
	if err != nil {
		return err
	}
	keep := *rec
	*rec = *merged
	rec.ID, rec.Shard = p.RunID, nil
	rec.Matrix, rec.Variant, rec.Repeat = keep.Matrix, keep.Variant, keep.Repeat
	rec.Provenance, rec.Sysctls = keep.Provenance, keep.Sysctls
	rec.Series, rec.Counters, rec.Peaks, rec.Collector = keep.Series, keep.Counters, keep.Peaks, keep.Collector
	rec.Census, rec.Notes = keep.Census, keep.Notes
	rec.Start, rec.End = keep.Start, keep.End
	if rec.Collector != nil && merged.Collector != nil {
		rec.Collector.DroppedLatencies = merged.Collector.DroppedLatencies
	}
	cfg := merged.Config
	cfg.Procs = p.Procs
	cfg.Sources = keep.Config.Sources
	cfg.StartAt = p.StartAt
	if p.Storm != nil {
		cfg.Storm = p.Storm.N
	} else {
		cfg.Conns, cfg.Rate, cfg.Cycles = p.Conns, p.Rate, p.Cycles
	}
	rec.Config = cfg
	var reasons []string
	if rec.InterruptReason != "" {
		reasons = append(reasons, rec.InterruptReason)
	}
	for _, m := range missing {
		reasons = append(reasons, m.String())
		if rec.Storm != nil && p.Storm != nil {
			// The missing shard's connections are not accounted for.
			rec.Storm.Unaccounted += uint64(results.ShardSlice(p.Storm.N, m.Index, m.Count))
		}
	}
	reasons = append(reasons, failed...)
	if len(missing) > 0 || len(failed) > 0 {
		rec.Interrupted = true
	}
	rec.InterruptReason = strings.Join(reasons, "; ")
	if e.dir != "" {
		fmt.Fprintf(e.out.Stderr, "closeload: %d shard records and logs in %s\n", len(recs), e.dir)
	}
	if len(failed) > 0 {
		return &shardsFailed{n: len(failed), of: p.Procs, why: failed}
	}
	return nil
}

// shardsFailed is a run of several processes some of whose shards failed;
// the merged record covers the others, marked.
type shardsFailed struct {
	n, of int
	why   []string
}

func (e *shardsFailed) Error() string {
	return fmt.Sprintf("%d of %d shards failed: %s", e.n, e.of, strings.Join(e.why, "; "))
}

// reservePorts binds (without listening) n consecutive ports on addr with
// SO_REUSEPORT, so no other socket takes them while the children, which
// set SO_REUSEPORT too, bind and listen on them. The descriptors are
// closed by the returned func.
func reservePorts(addr netip.Addr, n int) (uint16, func(), error) {
	family := unix.AF_INET
	if addr.Is6() && !addr.Is4In6() {
		family = unix.AF_INET6
	}
	bind := func(port uint16) (int, uint16, error) {
		fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return -1, 0, err
		}
		for _, o := range []int{unix.SO_REUSEADDR, unix.SO_REUSEPORT} {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, o, 1); err != nil {
				unix.Close(fd)
				return -1, 0, err
			}
		}
		var sa unix.Sockaddr = &unix.SockaddrInet4{Port: int(port), Addr: addr.Unmap().As4()}
		if family == unix.AF_INET6 {
			sa = &unix.SockaddrInet6{Port: int(port), Addr: addr.As16()}
		}
		if err := unix.Bind(fd, sa); err != nil {
			unix.Close(fd)
			return -1, 0, err
		}
		got, err := unix.Getsockname(fd)
		if err != nil {
			unix.Close(fd)
			return -1, 0, err
		}
		switch a := got.(type) {
		case *unix.SockaddrInet4:
			return fd, uint16(a.Port), nil
		case *unix.SockaddrInet6:
			return fd, uint16(a.Port), nil
		}
		unix.Close(fd)
		return -1, 0, errors.New("unknown address family")
	}
	var lastErr error
	for range 20 {
		fd, base, err := bind(0)
		if err != nil {
			return 0, nil, err
		}
		fds := []int{fd}
		ok := int(base)+n-1 <= 65535
		for k := 1; ok && k < n; k++ {
			f, _, err := bind(base + uint16(k))
			if err != nil {
				ok, lastErr = false, err
				break
			}
			fds = append(fds, f)
		}
		release := func() {
			for _, f := range fds {
				unix.Close(f)
			}
		}
		if ok {
			return base, release, nil
		}
		release()
	}
	return 0, nil, fmt.Errorf("no %d consecutive free ports on %s: %v", n, addr, lastErr)
}
