package runner

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/results"
	"github.com/closeload/closeload/sysctl"
	"golang.org/x/sys/unix"
)

// procsExe is the binary `run --procs` starts as its children: this one.
// Tests point it at a closeload they built.
var procsExe = os.Executable

// ShardDir is where `run --procs` keeps its shards' records and logs:
// beside the merged record, in a hidden directory (".RUN.shards") so that
// `closeload report DIR` finds the merged record alone, not the merged
// record and its parts; `closeload report` on the directory itself merges
// the shards again.
func ShardDir(out string) string {
	base := strings.TrimSuffix(filepath.Base(out), filepath.Ext(out))
	return filepath.Join(filepath.Dir(out), "."+base+".shards")
}

// shardProc is one child of --procs.
type shardProc struct {
	index   int
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	out     string // its record
	log     string
	mu      sync.Mutex
	latest  childStatus
	listen  chan struct{} // closed when it listens
	opened  chan struct{} // closed when it has opened its storm
	gone    chan struct{} // closed when its status pipe ends (it exited)
	waitErr error
	exit    int
}

func (c *shardProc) tell(verb string, t time.Time) {
	_, _ = fmt.Fprintf(c.stdin, "%s %d\n", verb, t.UnixNano())
}

// readStatus follows the child's status lines until the pipe ends.
func (c *shardProc) readStatus(r *os.File) {
	defer close(c.gone)
	defer r.Close()
	var lOnce, oOnce sync.Once
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var st childStatus
		if json.Unmarshal(sc.Bytes(), &st) != nil {
			continue
		}
		switch st.Event {
		case "listening":
			lOnce.Do(func() { close(c.listen) })
		case "opened":
			oOnce.Do(func() { close(c.opened) })
		case "status":
			c.mu.Lock()
			c.latest = st
			c.mu.Unlock()
		}
	}
}

// shardArgs are a child's arguments: the parent's run flags less those
// the parent owns (processes, isolation, sysctls, where records go), plus
// its shard, run id, record, and the shared listening port.
func shardArgs(plan *Plan, i int, out string, listen netip.AddrPort, startAt time.Time) []string {
	owned := []string{"procs", "out", "run-id", "sysctl", "host-sysctl", "isolate", "listen", "hlog",
		"sysctl-journal", "allow-unknown-sysctl", "shard", "start-at", "reuse-port", "storm-close-at"}
	args := []string{"run"}
	for _, a := range plan.Spec.Args {
		if !strings.HasPrefix(a, "--") {
			continue // "run" itself
		}
		name, _, _ := strings.Cut(a[2:], "=")
		drop := false
		for _, o := range owned {
			if name == o {
				drop = true
				break
			}
		}
		if !drop {
			args = append(args, a)
		}
	}
	args = append(args,
		fmt.Sprintf("--shard=%d/%d", i, plan.Procs),
		"--run-id="+plan.RunID,
		"--out="+out,
	)
	if plan.Builtin {
		args = append(args, "--listen="+listen.String(), "--reuse-port")
	}
	if !startAt.IsZero() {
		args = append(args, "--start-at="+startAt.UTC().Format(time.RFC3339Nano))
	}
	return args
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

// runProcs runs the plan as plan.Procs child processes of this binary,
// shards i/P of one run sharing the built-in target's port(s) with
// SO_REUSEPORT, in this process's network namespace (and so after its
// sysctls). It samples socket states and counters once for all of them,
// merges their records into plan.Out (keeping each beside it, in
// ShardDir) and reports a shard that failed as missing.
func runProcs(ctx context.Context, plan *Plan, rec *results.Run, as []sysctl.Assignment, out Output) (*results.Run, error) {
	s := plan.Spec
	exe, err := procsExe()
	if err != nil {
		return nil, fmt.Errorf("--procs: find own binary: %w", err)
	}
	dir := ShardDir(plan.Out)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("--procs: %w", err)
	}
	nports := 1
	if plan.Storm == nil {
		nports = len(plan.Mix.Entries)
	}
	listen := plan.Listen
	var ports []uint16
	if plan.Builtin {
		if listen.Port() == 0 {
			base, release, err := reservePorts(listen.Addr(), nports)
			if err != nil {
				return nil, fmt.Errorf("--procs: %w", err)
			}
			defer release()
			listen = netip.AddrPortFrom(listen.Addr(), base)
		}
		for k := range nports {
			ports = append(ports, listen.Port()+uint16(k))
		}
	} else {
		ports = []uint16{plan.Target.Port()}
	}

	// Shards of a storm start and close on the parent's word; other runs
	// start at a common --start-at.
	var startAt time.Time
	if plan.Storm == nil {
		startAt = plan.StartAt
		if startAt.IsZero() {
			startAt = time.Now().Add(time.Second + time.Duration(plan.Procs)*50*time.Millisecond)
		}
	}

	children := make([]*shardProc, plan.Procs)
	workloadCounts := func() collector.WorkloadCounts {
		var w collector.WorkloadCounts
		for _, c := range children {
			if c == nil {
				continue
			}
			c.mu.Lock()
			w.Cycles += c.latest.Cycles
			w.Errors += c.latest.Errors
			w.Attempts += c.latest.Attempts
			w.Held += c.latest.Held
			c.mu.Unlock()
		}
		return w
	}
	sampler, samplerErr := collector.NewSampler(collector.SamplerConfig{
		ProcRoot: "/proc", Source: s.CollectorSource, Interval: s.Interval, Ports: ports, Workload: workloadCounts, MaxCPU: samplerCPU(plan),
	})
	rec.Start = time.Now()
	var running atomic.Int32
	for i := range children {
		c, err := startShard(ctx, exe, plan, i, dir, listen, startAt)
		if err != nil {
			for _, c := range children[:i] {
				_ = c.cmd.Process.Kill()
				_ = c.cmd.Wait()
			}
			if samplerErr == nil {
				sampler.Stop()
			}
			return nil, fmt.Errorf("--procs: start shard %d: %w", i, err)
		}
		children[i] = c
		running.Add(1)
	}
	// Started once children is filled: the sampler reads it (the storm's
	// shards start dialing on the parent's word, later runs at startAt).
	if samplerErr == nil {
		sampler.Start()
	}
	var wg sync.WaitGroup
	for _, c := range children {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.waitErr = c.cmd.Wait()
			c.exit = c.cmd.ProcessState.ExitCode()
			running.Add(-1)
		}()
	}
	progCtx, stopProg := context.WithCancel(ctx)
	var prog sync.WaitGroup
	if out.Progress && IsTerminal(out.Stderr) {
		prog.Add(1)
		go func() { defer prog.Done(); procsProgress(progCtx, out.Stderr, workloadCounts, &running, plan.Procs) }()
	}

	if plan.Storm != nil {
		// Every listener shares the port before anyone dials, so the
		// kernel spreads connections over all of them; every shard has
		// opened before anyone closes.
		if awaitAll(ctx, children, func(c *shardProc) chan struct{} { return c.listen }) {
			start := time.Now().Add(20 * time.Millisecond)
			for _, c := range children {
				c.tell("start", start)
			}
		}
		if awaitAll(ctx, children, func(c *shardProc) chan struct{} { return c.opened }) {
			closeAt := time.Now().Add(s.Hold)
			if !plan.Storm.CloseAt.IsZero() {
				closeAt = plan.Storm.CloseAt
			}
			for _, c := range children {
				c.tell("close", closeAt)
			}
		}
	}
	wg.Wait()
	stopProg()
	prog.Wait()
	for _, c := range children {
		<-c.gone
		c.stdin.Close()
	}
	rec.End = time.Now()

	var recs []*results.Run
	var failed []string
	usageErr := ""
	for _, c := range children {
		r, rerr := results.ReadFile(c.out)
		if c.exit == 2 && usageErr == "" {
			usageErr = lastLine(c.log)
		}
		if rerr != nil || r.Shard == nil || r.Shard.Index != c.index || r.ID != plan.RunID {
			why := fmt.Sprintf("exit status %d", c.exit)
			if c.waitErr == nil && rerr != nil {
				why = rerr.Error()
			}
			failed = append(failed, fmt.Sprintf("shard %d/%d: %s (see %s)", c.index, plan.Procs, why, c.log))
			continue
		}
		if c.exit != 0 {
			failed = append(failed, fmt.Sprintf("shard %d/%d: exit status %d (see %s)", c.index, plan.Procs, c.exit, c.log))
		}
		recs = append(recs, r)
	}
	sr := stopSampling(sampler, samplerErr)
	if usageErr != "" && len(recs) == 0 {
		return nil, usage("--procs: the shards rejected their flags: %s", usageErr)
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("--procs: every shard failed: %s", strings.Join(failed, "; "))
	}
	merged, missing, err := results.Merge(recs)
	if err != nil {
		return nil, fmt.Errorf("--procs: %w", err)
	}
	final := *merged
	final.ID, final.Shard = plan.RunID, nil
	final.Matrix, final.Variant, final.Repeat = rec.Matrix, rec.Variant, rec.Repeat
	final.Provenance = rec.Provenance
	final.Sysctls = rec.Sysctls
	final.Sysctls.After = sysctl.SnapshotWith("/proc", as)
	cfg := merged.Config
	cfg.Procs = plan.Procs
	cfg.Sources = rec.Config.Sources
	cfg.StartAt = plan.StartAt
	if plan.Storm != nil {
		cfg.Storm = plan.Storm.Total
	} else {
		cfg.Conns, cfg.Rate, cfg.Cycles = s.Conns, s.Rate, s.Cycles
	}
	final.Config = cfg
	applySampling(&final, sr, samplerErr)
	var dropped int64
	for _, r := range recs {
		if r.Collector != nil {
			for _, n := range r.Collector.Notes {
				dropped += droppedOf(n)
			}
		}
	}
	if dropped > 0 {
		final.Collector.Notes = append(final.Collector.Notes, droppedNote(dropped))
	}
	var reasons []string
	if final.InterruptReason != "" {
		reasons = append(reasons, final.InterruptReason)
	}
	for _, m := range missing {
		reasons = append(reasons, m.String())
		if final.Storm != nil && plan.Storm != nil {
			// The missing shard's connections are not accounted for.
			final.Storm.Unaccounted += uint64(results.ShardSlice(plan.Storm.Total, m.Index, m.Count))
		}
	}
	if len(missing) > 0 || len(failed) > 0 {
		final.Interrupted = true
	}
	if ctx.Err() != nil {
		final.Interrupted = true
		reasons = append(reasons, "interrupted by signal")
	}
	final.InterruptReason = strings.Join(reasons, "; ")
	if err := results.Write(plan.Out, &final); err != nil {
		return &final, err
	}
	fmt.Fprintf(out.Stderr, "closeload: %d shard records and logs in %s\n", len(recs), dir)
	if len(failed) > 0 {
		return &final, fmt.Errorf("--procs: %d of %d shards failed: %s", len(failed), plan.Procs, strings.Join(failed, "; "))
	}
	return &final, nil
}

// startShard starts child i with its status pipe and control pipe.
func startShard(ctx context.Context, exe string, plan *Plan, i int, dir string, listen netip.AddrPort, startAt time.Time) (*shardProc, error) {
	c := &shardProc{
		index: i, out: filepath.Join(dir, fmt.Sprintf("shard-%d.json", i)), log: filepath.Join(dir, fmt.Sprintf("shard-%d.log", i)),
		listen: make(chan struct{}), opened: make(chan struct{}), gone: make(chan struct{}),
	}
	_ = os.Remove(c.out)
	logf, err := os.Create(c.log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe, shardArgs(plan, i, c.out, listen, startAt)...)
	cmd.Env = append(os.Environ(), procsChildEnv+"=1")
	cmd.ExtraFiles = []*os.File{statusW} // descriptor 3
	cmd.Stdout, cmd.Stderr = logf, logf
	// Children die with this process, and pass SIGTERM on as an
	// interrupted record.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = sysctl.ChildStopDelay
	stdin, err := cmd.StdinPipe()
	if err != nil {
		statusR.Close()
		statusW.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		statusR.Close()
		statusW.Close()
		return nil, err
	}
	statusW.Close()
	c.cmd, c.stdin = cmd, stdin
	go c.readStatus(statusR)
	return c, nil
}

// awaitAll waits until every child has reached a step (or is gone); false
// when ctx ended first.
func awaitAll(ctx context.Context, children []*shardProc, step func(*shardProc) chan struct{}) bool {
	for _, c := range children {
		select {
		case <-step(c):
		case <-c.gone:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// procsProgress is the live line of a --procs run.
func procsProgress(ctx context.Context, w io.Writer, counts func() collector.WorkloadCounts, running *atomic.Int32, procs int) {
	liveLine(ctx, w, func(el time.Duration) string {
		c := counts()
		return fmt.Sprintf("%5.1fs  %d/%d processes  attempts %d  held %d  done %d  errors %d",
			el.Seconds(), running.Load(), procs, c.Attempts, c.Held, c.Cycles, c.Errors)
	})
}
