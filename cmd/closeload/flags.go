package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/closeload/closeload/runner"
	"github.com/closeload/closeload/sysctl"
	"github.com/closeload/closeload/workload"
	"github.com/spf13/pflag"
)

// runFlags are the flags of `closeload run` (and of every run of
// `closeload matrix`): typed values go straight into the plan, text is
// parsed into it by plan().
type runFlags struct {
	p runner.Plan

	scenario, target, listen, source, arrival string
	request, shard, startAt, procs            string
	closer, stormCloseAt, onRefused, format   string
	collectorSource                           string
	sysctls, thresholds                       []string
	storm                                     int
	stormWindow                               time.Duration
	isolate, hostNetns, allowUnknown          bool
}

// summaryFormats are the accepted --format values of run.
var summaryFormats = []string{"text", "json"}

// planFlags names, for each plan field, the flag that sets it: a
// validation error names the field, the user sees the flag.
var planFlags = map[string]string{
	"RunID": "--run-id", "Mix": "--scenario", "Target": "--target", "Listen": "--listen",
	"Conns": "--conns", "Rate": "--rate", "Arrival": "--arrival", "Duration": "--duration",
	"Cycles": "--cycles", "Warmup": "--warmup", "Sources": "--source", "RequestSize": "--request-size",
	"ResponseSize": "--response-size", "Request": "--request", "Hold": "--hold", "Timeout": "--timeout",
	"Grace": "--grace", "Interval": "--interval", "CollectorSource": "--collector-source", "TimewaitLifetime": "--timewait-lifetime",
	"Acceptors": "--acceptors", "Storm": "--storm", "Storm.Window": "--storm-window",
	"Storm.Closer": "--closer", "Storm.CloseAt": "--storm-close-at", "Procs": "--procs",
	"Shard": "--shard", "StartAt": "--start-at", "Sysctls": "--sysctl", "HostSysctl": "--host-sysctl",
	"Journal": "--sysctl-journal", "Netns": "--isolate", "OnRefused": "--on-refused",
	"Thresholds": "--threshold", "StallTimeout": "--stall-timeout", "MetricsListen": "--metrics-listen", "Out": "--out", "Hlog": "--hlog", "Variants": "--variants",
	"Repeat": "--repeat", "Matrix": "--matrix-id",
}

// flagOf names a plan field's flag.
func flagOf(field string) string {
	if f, ok := planFlags[field]; ok {
		return f
	}
	return field
}

// planError turns a plan's validation error into a usage error that names
// the flags.
func planError(err error) error {
	var fe *runner.FieldError
	if errors.As(err, &fe) {
		return usageError{errors.New(fe.Format(flagOf))}
	}
	if errors.Is(err, runner.ErrUsage) {
		return usageError{err}
	}
	return err
}

// addRunFlags defines every flag of a run on fs.
func addRunFlags(fs *pflag.FlagSet, f *runFlags) {
	f.p = runner.DefaultPlan()
	p := &f.p
	f.listen, f.arrival, f.collectorSource, f.onRefused, f.format = "127.0.0.1:0", "constant", "auto", "stop", "text"
	fs.StringVarP(&f.scenario, "scenario", "s", runner.DefaultMix, "scenario mix NAME[:WEIGHT],... (see 'closeload scenarios')")
	fs.StringVar(&f.target, "target", "", "external target HOST:PORT; only client halves run (default: the built-in target)")
	fs.StringVar(&f.listen, "listen", f.listen, "built-in target's first listening address; one port per scenario")
	fs.IntVarP(&p.Conns, "conns", "c", p.Conns, "workers: connections in flight (closed loop) or at most in flight (open loop)")
	fs.Float64VarP(&p.Rate, "rate", "r", p.Rate, "open loop: connections per second (0 = closed loop)")
	fs.StringVar(&f.arrival, "arrival", f.arrival, "open-loop arrivals: constant or poisson (needs --rate)")
	fs.DurationVarP(&p.Duration, "duration", "d", p.Duration, "how long to measure, after the warm-up (0 = until --cycles)")
	fs.Uint64Var(&p.Cycles, "cycles", p.Cycles, "stop after this many connections (0 = until --duration)")
	fs.DurationVar(&p.Warmup, "warmup", p.Warmup, "run this long first and leave it out of every figure")
	fs.StringVar(&f.source, "source", "", "source addresses: ADDR, FIRST-LAST or PREFIX/LEN, comma-separated, local to where the run happens (default: 254 of 127.0.0.0/8 for a loopback target)")
	fs.IntVar(&p.RequestSize, "request-size", p.RequestSize, "request bytes (stream-echo: bytes streamed)")
	fs.IntVar(&p.ResponseSize, "response-size", p.ResponseSize, "response bytes: what the built-in target sends; from --target, read exactly this many (default -1: 16 from the built-in target, read to EOF from --target)")
	fs.DurationVar(&p.Hold, "hold", p.Hold, "how long hold scenarios keep connections (orphan-finwait2, close-wait-leak)")
	fs.DurationVar(&p.Timeout, "timeout", p.Timeout, "bound on every connect and read")
	fs.DurationVar(&p.Grace, "grace", p.Grace, "after a stop, how long connections in flight may take to finish (a second Ctrl-C skips it)")
	fs.StringVar(&f.request, "request", "", "request bytes for external targets: http (GET with Connection: close) or @FILE")
	fs.StringVarP(&p.Out, "out", "o", "", "record file; - for standard output (default results/RUN-ID.json)")
	fs.StringVar(&p.RunID, "run-id", "", "run id (default: time and pid)")
	fs.StringVar(&p.Hlog, "hlog", "", "also write an HdrHistogram interval log to this file")
	fs.DurationVar(&p.Interval, "interval", p.Interval, "sampling interval of socket states and counters (min 10ms; default: a 20th of --duration, from 100ms to 1s)")
	fs.StringVar(&f.collectorSource, "collector-source", f.collectorSource, "socket-state source: auto (the eBPF tracer where permitted, else netlink, else proc), ebpf, netlink or proc")
	fs.BoolVar(&p.TimewaitLifetime, "timewait-lifetime", false, "with the eBPF tracer, also measure how long TIME_WAIT and orphaned FIN_WAIT2 mini-sockets live (every timer of the machine pays a check; on by default for orphan-finwait2 and runs setting tcp_fin_timeout, tcp_tw_reuse, tcp_max_tw_buckets or tcp_rfc1337)")
	fs.StringArrayVar(&f.sysctls, "sysctl", nil, "KEY=VALUE to set for this run (repeatable); in the run's fresh network namespace unless --host-sysctl")
	fs.BoolVar(&p.HostSysctl, "host-sysctl", false, "apply --sysctl to the host (root; journaled and restored) instead of a fresh namespace")
	fs.BoolVar(&f.isolate, "isolate", false, "require a fresh network namespace (the default with the built-in target, where permitted)")
	fs.BoolVar(&f.hostNetns, "host-netns", false, "run in this process's network namespace, not a fresh one")
	fs.BoolVar(&f.allowUnknown, "allow-unknown-sysctl", false, "accept well-formed net.* keys the registry does not know")
	fs.StringVar(&p.Journal, "sysctl-journal", "", "host mode: where to journal old values (default "+sysctl.DefaultJournalPath+")")
	fs.StringVar(&f.shard, "shard", "", "run shard INDEX/COUNT of a run spread over processes or hosts: an exact slice of --conns, --rate and --cycles")
	fs.StringVar(&f.startAt, "start-at", "", "wait until this RFC 3339 time before starting the load (the same on every shard)")
	fs.IntVar(&p.Acceptors, "acceptors", 0, "built-in target threads per scenario (default: conns, at most 256)")
	fs.StringArrayVar(&f.thresholds, "threshold", nil, "pass/fail criterion (repeatable), e.g. 'errors<0.1%', 'total.p99<5ms', 'rate>=10000', 'peak.CLOSE_WAIT<100', 'client-halfclose.total.p99<2ms'; a failed one exits 3")
	fs.StringVar(&f.onRefused, "on-refused", f.onRefused, "when the target refuses connections: stop (after 1s of nothing else) or continue (ride out a restart, report the outage)")
	fs.DurationVar(&p.StallTimeout, "stall-timeout", 0, "stop the run with its reason when nothing completed for this long while faults go on (refused, reset, no port, no descriptor); 0: 2s, negative: never")
	fs.IntVar(&f.storm, "storm", 0, "storm shape: open N connections (paced by --rate if given), hold them for --hold, then half-close them all within --storm-window")
	fs.DurationVar(&f.stormWindow, "storm-window", 0, "spread the storm's FINs evenly over this window (0 = all at once)")
	addMetricsListen(fs, &p.MetricsListen)
	fs.StringVar(&f.closer, "closer", "", "side that sends the storm's FINs: client, server or both (default: the scenario's)")
	fs.StringVar(&f.procs, "procs", "", "run as P processes, each a shard, merged into one record; auto = as many as the descriptor limit needs")
	fs.StringVar(&f.stormCloseAt, "storm-close-at", "", "close time (RFC 3339) shared by the shards of a storm on several hosts (default: --hold after the opening)")
}

// plan turns the flags into a plan, naming the flag of every value that
// does not parse; Validate checks the rest. withSysctls is false for the
// matrix, whose --sysctl flags are sweeps.
func (f *runFlags) plan(fs *pflag.FlagSet, withSysctls bool) (runner.Plan, error) {
	p := f.p
	if !fs.Changed("interval") && p.Duration > 0 {
		// A short run is sampled finely enough to draw a line: at least
		// 20 samples, at most one a second, never under 100ms.
		p.Interval = min(time.Second, max(p.Duration/20, 100*time.Millisecond))
	}
	if fs.Changed("scenario") || f.storm == 0 {
		m, err := workload.ParseMix(f.scenario)
		if err != nil {
			return p, usagef("--scenario: %v", err)
		}
		p.Mix = m
	}
	if f.target != "" {
		ap, err := resolveTarget(f.target)
		if err != nil {
			return p, usagef("--target %q: %v", f.target, err)
		}
		p.Target, p.TargetName = ap, f.target
	}
	ap, err := netip.ParseAddrPort(f.listen)
	if err != nil {
		return p, usagef("--listen %q: want IP:PORT such as 127.0.0.1:0", f.listen)
	}
	p.Listen = ap
	if p.Arrival, err = workload.ParseArrival(f.arrival); err != nil {
		return p, usagef("--arrival: %v", err)
	}
	if fs.Changed("arrival") && p.Rate == 0 {
		return p, usagef("--arrival %s needs --rate: arrivals are spaced only in an open loop", f.arrival)
	}
	if f.source != "" {
		if p.Sources, err = workload.ParseSources(f.source); err != nil {
			return p, usagef("--source: %v", err)
		}
	}
	switch {
	case f.request == "":
	case f.request == "http":
		p.RequestKind = runner.RequestHTTP
	case strings.HasPrefix(f.request, "@"):
		b, err := os.ReadFile(f.request[1:])
		if err != nil {
			return p, usagef("--request %s: %v", f.request, err)
		}
		p.RequestKind, p.Request, p.RequestFile = runner.RequestFile, b, f.request[1:]
	default:
		return p, usagef("--request %q: want http or @FILE", f.request)
	}
	if f.collectorSource != "auto" {
		p.CollectorSource = f.collectorSource
	}
	if withSysctls && len(f.sysctls) > 0 {
		if p.Sysctls, err = sysctl.ParseAssignments(f.sysctls, f.allowUnknown); err != nil {
			return p, usagef("--sysctl: %v", err)
		}
	}
	switch {
	case f.isolate && f.hostNetns:
		return p, usagef("--isolate and --host-netns: choose one")
	case f.isolate:
		p.Netns = runner.NetnsIsolated
	case f.hostNetns:
		p.Netns = runner.NetnsHost
	}
	if f.shard != "" {
		if p.Shard, err = runner.ParseShard(f.shard); err != nil {
			return p, usagef("--shard %v", err)
		}
	}
	if f.startAt != "" {
		if p.StartAt, err = time.Parse(time.RFC3339Nano, f.startAt); err != nil {
			return p, usagef("--start-at %q: want an RFC 3339 time such as 2026-11-24T12:00:00Z", f.startAt)
		}
	}
	for _, s := range f.thresholds {
		t, err := runner.ParseThreshold(s)
		if err != nil {
			return p, usagef("--threshold: %v", err)
		}
		p.Thresholds = append(p.Thresholds, t)
	}
	if p.OnRefused, err = workload.ParseOnRefused(f.onRefused); err != nil {
		return p, usagef("--on-refused: %v", err)
	}
	switch f.procs {
	case "", "1":
	case "auto":
		p.Procs = runner.ProcsAuto
	default:
		n, err := strconv.Atoi(f.procs)
		if err != nil || n < 1 || n > runner.MaxProcs {
			return p, usagef("--procs %q: want auto or a number of processes from 1 to %d", f.procs, runner.MaxProcs)
		}
		p.Procs = n
	}
	if f.storm != 0 {
		st := &runner.Storm{N: f.storm, Window: f.stormWindow}
		if f.closer != "" {
			c, err := workload.ParseCloser(f.closer)
			if err != nil {
				return p, usagef("--closer: %v", err)
			}
			st.Closer = &c
		}
		if f.stormCloseAt != "" {
			if st.CloseAt, err = time.Parse(time.RFC3339Nano, f.stormCloseAt); err != nil {
				return p, usagef("--storm-close-at %q: want an RFC 3339 time such as 2026-11-25T10:00:00Z", f.stormCloseAt)
			}
		}
		p.Storm = st
		if !fs.Changed("duration") {
			p.Duration = 0 // a storm runs until its last connection is gone
		}
	} else {
		for _, name := range []string{"closer", "storm-window", "storm-close-at"} {
			if fs.Changed(name) {
				return p, usagef("--%s needs --storm: only a storm closes every connection at one time", name)
			}
		}
	}
	if !slices.Contains(summaryFormats, f.format) {
		return p, usagef("--format %q: want %s", f.format, strings.Join(summaryFormats, " or "))
	}
	return p, nil
}

// resolveTarget accepts host:port with a numeric port; a host name is
// resolved once, here, so that the run measures connections, not DNS.
func resolveTarget(s string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("want HOST:PORT (%v)", err)
	}
	pn, err := strconv.ParseUint(port, 10, 16)
	if err != nil || pn == 0 {
		return netip.AddrPort{}, fmt.Errorf("port %q: want 1-65535", port)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return netip.AddrPortFrom(a.Unmap(), uint16(pn)), nil
	}
	addrs, err := net.LookupHost(host)
	if err != nil || len(addrs) == 0 {
		return netip.AddrPort{}, fmt.Errorf("cannot resolve %q: %v", host, err)
	}
	a, err := netip.ParseAddr(addrs[0])
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(pn)), nil
}

// flagArgs returns the flags the user set, as arguments, so that a record
// says how to reproduce it.
func flagArgs(fs *pflag.FlagSet) []string {
	var out []string
	fs.Visit(func(f *pflag.Flag) {
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			for _, v := range sv.GetSlice() {
				out = append(out, "--"+f.Name+"="+v)
			}
			return
		}
		out = append(out, "--"+f.Name+"="+f.Value.String())
	})
	return out
}
