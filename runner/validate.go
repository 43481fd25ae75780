package runner

import (
	"math"
	"net/netip"
	"slices"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/metrics"
	"github.com/closeload/closeload/results"
	"github.com/closeload/closeload/sysctl"
	"github.com/closeload/closeload/workload"
)

// maxConns bounds workers per process: each is a thread blocked in the
// kernel with a P of its own, and a process holds at most its descriptor
// limit of connections anyway (20,000 here, two per connection with the
// built-in target).
const maxConns = 10000

// Validate checks the whole plan before anything opens a socket or a file,
// and fills in what it derives: the default mix and sources, the response
// size, the HTTP request, a storm's scenario and closer, the number of
// processes, and, for a shard, its slice of the run. It is the one
// validation of a run; a second call changes nothing.
// timewaitSysctls govern timewait mini-sockets: a run that sets one
// measures their lifetimes (Plan.TimewaitLifetime).
var timewaitSysctls = []string{"net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_tw_reuse", "net.ipv4.tcp_max_tw_buckets", "net.ipv4.tcp_rfc1337"}

func (p *Plan) Validate() error {
	if p.RunID == "" {
		p.RunID = NewRunID()
	} else if !validRunID(p.RunID) {
		return fieldErr("RunID", "%q: no slashes or spaces", p.RunID)
	}
	if p.Shard != nil {
		if p.Shard.Count < 1 || p.Shard.Count > 10000 || p.Shard.Index < 0 || p.Shard.Index >= p.Shard.Count {
			return fieldErr("Shard", "%d/%d: want INDEX/COUNT with 0 <= INDEX < COUNT <= 10000", p.Shard.Index, p.Shard.Count)
		}
		if p.Whole == nil {
			if err := p.takeSlice(); err != nil {
				return err
			}
		}
	}
	if len(p.Mix.Entries) == 0 {
		mix := DefaultMix
		if p.Storm != nil {
			mix = stormDefaultScenario(p.Storm.Closer).String()
		}
		m, err := workload.ParseMix(mix)
		if err != nil {
			return fieldErr("Mix", "%v", err)
		}
		p.Mix = m
	}
	if p.Mix.Has(workload.OrphanFinWait2) {
		p.TimewaitLifetime = true
	}
	for _, a := range p.Sysctls {
		if slices.Contains(timewaitSysctls, a.Key) {
			p.TimewaitLifetime = true
		}
	}
	if p.Conns < 1 || p.Conns > maxConns {
		return fieldErr("Conns", "%d: want a whole number from 1 to %d (each worker is a thread; beyond that use several processes)", p.Conns, maxConns)
	}
	if p.Rate < 0 || math.IsNaN(p.Rate) || p.Rate > 10e6 {
		return fieldErr("Rate", "%v: want a positive number of connections per second (0 = closed loop)", p.Rate)
	}
	if p.Arrival != workload.ArrivalConstant && p.Rate == 0 {
		return fieldErr("Arrival", "%s needs {Rate}: arrivals are spaced only in an open loop", p.Arrival)
	}
	if p.Duration < 0 {
		return fieldErr("Duration", "%v: want a positive duration such as 10s or 2m", p.Duration)
	}
	if p.Storm == nil && p.Duration == 0 && p.Cycles == 0 {
		return fieldErr("Duration", "0 needs {Cycles}: a run must be bounded")
	}
	if p.Warmup < 0 {
		return fieldErr("Warmup", "%v: want zero or a positive duration", p.Warmup)
	}
	if p.RequestSize < 0 || p.RequestSize > 1<<30 {
		return fieldErr("RequestSize", "%d: want 0 to 1073741824 bytes", p.RequestSize)
	}
	if p.ResponseSize < -1 || p.ResponseSize > 1<<30 {
		return fieldErr("ResponseSize", "%d: want 0 to 1073741824 bytes (-1: 16 from the built-in target, read to EOF from {Target})", p.ResponseSize)
	}
	if err := p.checkRequest(); err != nil {
		return err
	}
	if p.Hold < 0 {
		return fieldErr("Hold", "%v: want zero or a positive duration", p.Hold)
	}
	if p.Timeout <= 0 {
		return fieldErr("Timeout", "%v: want a positive duration", p.Timeout)
	}
	if p.Grace < 0 {
		return fieldErr("Grace", "%v: want zero or a positive duration", p.Grace)
	}
	if p.Interval < collector.MinInterval {
		return fieldErr("Interval", "%v: want at least %v", p.Interval, collector.MinInterval)
	}
	if err := collector.ValidateSource(p.CollectorSource); err != nil {
		return fieldErr("CollectorSource", "%q: want auto, ebpf, netlink or proc", p.CollectorSource)
	}
	if p.Acceptors < 0 || p.Acceptors > 4096 {
		return fieldErr("Acceptors", "%d: want 1 to 4096 (0: conns, at most 256)", p.Acceptors)
	}
	if p.OnRefused != workload.RefusedStop && p.OnRefused != workload.RefusedContinue {
		return fieldErr("OnRefused", "%v: want stop or continue", p.OnRefused)
	}
	if p.ResponseSize == -1 {
		// The built-in target sends 16 bytes; an external server's response
		// is read to its end (EOF), as an HTTP/1.0 client does, rather than
		// cut short, which would reset the connection.
		p.ResponseSize = 16
		if !p.Builtin() {
			p.ResponseSize = 0
		}
	}
	if p.MetricsListen != "" {
		if _, err := metrics.ListenAddr(p.MetricsListen); err != nil {
			return fieldErr("MetricsListen", "%v", err)
		}
	}
	if err := p.checkPlace(); err != nil {
		return err
	}
	if err := p.checkSources(); err != nil {
		return err
	}
	if err := p.checkOutputs(); err != nil {
		return err
	}
	for _, t := range p.Thresholds {
		if err := t.check(); err != nil {
			return err
		}
		if err := t.checkScenario(p.Mix); err != nil {
			return err
		}
	}
	return p.checkStorm()
}

// takeSlice gives this shard its exact slice of the run: connections, rate,
// cycles and storm are split floor((i+1)·C/N) − floor(i·C/N), so the slices
// of all shards add up to the whole. The record then holds the shard's own
// slice, which results.Merge sums back.
func (p *Plan) takeSlice() error {
	sh := p.Shard
	p.Whole = &WholeRun{Conns: p.Conns, Rate: p.Rate, Cycles: p.Cycles}
	conns := results.ShardSlice(p.Conns, sh.Index, sh.Count)
	if conns < 1 && p.Storm != nil {
		conns = 1 // a storm has no workers: its size is what is sliced
	}
	if conns < 1 {
		return fieldErr("Shard", "%d/%d: {Conns} %d gives this shard no worker; use at least %d conns", sh.Index, sh.Count, p.Conns, sh.Count)
	}
	p.Conns = conns
	if p.Rate > 0 {
		if p.Rate == math.Trunc(p.Rate) && p.Rate < 1<<52 {
			p.Rate = float64(results.ShardSlice(int(p.Rate), sh.Index, sh.Count))
		} else {
			p.Rate /= float64(sh.Count)
		}
		if p.Rate <= 0 {
			return fieldErr("Shard", "%d/%d: {Rate} gives this shard no connection; raise it", sh.Index, sh.Count)
		}
	}
	if p.Cycles > 0 {
		i, n := uint64(sh.Index), uint64(sh.Count)
		p.Cycles = (i+1)*p.Cycles/n - i*p.Cycles/n
		if p.Cycles == 0 {
			return fieldErr("Shard", "%d/%d: {Cycles} gives this shard none; raise it", sh.Index, sh.Count)
		}
	}
	return nil
}

// checkRequest refuses requests that make a scenario meaningless and
// builds the HTTP request.
func (p *Plan) checkRequest() error {
	if p.Mix.Has(workload.UnreadClose) && p.RequestSize < 2 && p.RequestKind == RequestGenerated {
		return fieldErr("RequestSize", "%d: unread-close needs at least 2 bytes (the target reads half)", p.RequestSize)
	}
	if p.Mix.Has(workload.StreamEcho) && p.RequestSize < 1 {
		return fieldErr("RequestSize", "%d: stream-echo needs at least 1 byte to stream", p.RequestSize)
	}
	switch p.RequestKind {
	case RequestGenerated:
		return nil
	case RequestHTTP, RequestFile:
	default:
		return fieldErr("Request", "kind %q: want http or a file", p.RequestKind)
	}
	if p.Builtin() {
		return fieldErr("Request", "needs {Target}: the built-in target plays its own half and reads generated bytes")
	}
	if p.Mix.Has(workload.StreamEcho) {
		return fieldErr("Request", "with stream-echo: stream-echo streams generated bytes and checks that every one comes back, which only an echo server does; against an HTTP server use full-close or client-halfclose, against an echo server drop {Request}")
	}
	if p.Mix.Has(workload.UnreadClose) {
		return fieldErr("Request", "with unread-close: the server reads the whole request, so it never closes with unread data and never resets; use {RequestSize} larger than what the server reads, without {Request}")
	}
	if p.RequestKind == RequestHTTP {
		host := p.TargetName
		if host == "" {
			host = p.Target.String()
		}
		p.Request = []byte("GET / HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: closeload\r\nConnection: close\r\n\r\n")
	}
	return nil
}

// checkPlace checks where the run happens against what it sets.
func (p *Plan) checkPlace() error {
	switch p.Netns {
	case NetnsAuto, NetnsHost, NetnsIsolated:
	default:
		return fieldErr("Netns", "%q: want isolated or host", p.Netns)
	}
	if p.HostSysctl && p.Netns == NetnsIsolated {
		return fieldErr("Netns", "isolated and {HostSysctl}: choose one")
	}
	if p.HostSysctl && len(p.Sysctls) == 0 {
		return fieldErr("HostSysctl", "needs {Sysctls}: nothing to set on the host")
	}
	if len(p.Sysctls) > 0 && !p.HostSysctl && p.Netns == NetnsHost {
		return fieldErr("Sysctls", "in the host namespace need {HostSysctl} (root; journaled and restored)")
	}
	isolated, _ := p.isolation()
	if isolated && !p.Builtin() && (len(p.Sysctls) > 0 || p.Netns == NetnsIsolated) {
		return fieldErr("Target", "%s cannot be reached from the fresh network namespace an isolated run (or one with {Sysctls}) happens in; use {HostSysctl} (root) to change the host's settings for an external target", p.targetLabel())
	}
	if isolated {
		if err := sysctl.CheckIsolatable(p.Sysctls); err != nil {
			return fieldErr("Sysctls", "%v", err)
		}
	}
	return nil
}

// isolation says whether the run will happen in a fresh network namespace
// and whether it must (false: it may fall back to the host's).
func (p *Plan) isolation() (isolate, required bool) {
	switch {
	case p.HostSysctl, p.Netns == NetnsHost:
		return false, false
	case len(p.Sysctls) > 0, p.Netns == NetnsIsolated:
		return true, true
	}
	return p.Builtin(), false
}

// targetLabel names the external target for messages.
func (p *Plan) targetLabel() string {
	if p.TargetName != "" {
		return p.TargetName
	}
	return p.Target.String()
}

// checkSources fills the default sources and refuses addresses that are
// not of the target's family or not local where the run will happen.
func (p *Plan) checkSources() error {
	dst := p.Listen.Addr()
	if !p.Builtin() {
		dst = p.Target.Addr()
	}
	if len(p.Sources) == 0 {
		p.Sources = workload.DefaultSources(dst)
		return nil
	}
	if p.Sources[0].Unmap().Is4() != dst.Unmap().Is4() {
		return fieldErr("Sources", "%s is not of the target's family (%s)", p.Sources[0], dst)
	}
	isolated, _ := p.isolation()
	for _, a := range p.Sources {
		if !isLocal(a, isolated) {
			where := "this host"
			if isolated {
				where = "the run's fresh network namespace, which has only loopback (127.0.0.0/8, ::1)"
			}
			return fieldErr("Sources", "%s is not an address of %s: every connect from it would fail with EADDRNOTAVAIL", a, where)
		}
	}
	return nil
}

// checkOutputs checks that the record and the hlog can be written, without
// writing anything.
func (p *Plan) checkOutputs() error {
	if p.Out != "" {
		if err := results.CheckOutput(p.Out); err != nil {
			return fieldErr("Out", "%s: %v", p.Out, err)
		}
	}
	if p.Hlog != "" {
		if err := results.CheckOutput(p.Hlog); err != nil {
			return fieldErr("Hlog", "%s: %v", p.Hlog, err)
		}
		if p.Storm != nil || p.Procs > 1 || p.Procs == ProcsAuto {
			return fieldErr("Hlog", "not available for storms or several processes yet; the record holds the merged histograms")
		}
		if results.SameOutput(p.Out, p.Hlog) {
			return fieldErr("Hlog", "%s is where {Out} goes too: one would overwrite the other", p.Hlog)
		}
	}
	return nil
}

// storm-related checks and the process count.
func (p *Plan) checkStorm() error {
	if p.Procs < ProcsAuto || p.Procs > MaxProcs {
		return fieldErr("Procs", "%d: want auto or a number of processes from 1 to %d", p.Procs, MaxProcs)
	}
	isolated, _ := p.isolation()
	lim := limitsNow(isolated, p.Sysctls)
	if p.Storm == nil {
		return p.resolveProcs(p.Conns, lim)
	}
	st := p.Storm
	if p.Duration != 0 {
		return fieldErr("Duration", "%v with {Storm}: a storm runs until its last connection is gone; bound it with {Hold} and {Storm.Window}", p.Duration)
	}
	if st.N < 1 {
		return fieldErr("Storm", "%d: want a number of connections", st.N)
	}
	if st.Window < 0 {
		return fieldErr("Storm.Window", "%v: want zero (all at once) or a positive duration", st.Window)
	}
	if len(p.Mix.Entries) != 1 {
		return fieldErr("Mix", "%s: a storm plays one scenario: client-halfclose, server-halfclose, simultaneous or close-wait-leak", p.Mix)
	}
	sc := p.Mix.Entries[0].Scenario
	def, ok := workload.StormCloser(sc)
	if !ok {
		return fieldErr("Mix", "%s: a storm plays client-halfclose, server-halfclose, simultaneous or close-wait-leak", sc)
	}
	if c := st.Closer; c != nil {
		switch {
		case sc == workload.CloseWaitLeak && *c == workload.CloserBoth:
			return fieldErr("Storm.Closer", "both: close-wait-leak leaks on the side that receives the FIN; want client or server")
		case sc != workload.CloseWaitLeak && *c != def:
			return fieldErr("Storm.Closer", "%s contradicts {Mix} %s, which closes from %s; drop it or choose the scenario (client-halfclose, server-halfclose, simultaneous)", *c, sc, def)
		}
	} else {
		st.Closer = &def
	}
	if !p.Builtin() && *st.Closer != workload.CloserClient {
		return fieldErr("Storm.Closer", "%s needs the built-in target: an external target closes when it chooses", *st.Closer)
	}
	st.Mine = st.N
	if p.Shard != nil {
		st.Mine = results.ShardSlice(st.N, p.Shard.Index, p.Shard.Count)
	}
	if err := p.resolveProcs(st.N, lim); err != nil {
		return err
	}
	return checkStormLimits(p, lim)
}

// resolveProcs turns ProcsAuto into a number and checks the count.
func (p *Plan) resolveProcs(n int, lim Limits) error {
	if p.Shard != nil {
		// A shard is one process; the processes belong to its parent.
		p.Procs = 1
		return nil
	}
	if p.Procs == ProcsAuto {
		procs, ok := autoProcs(n, p.Builtin(), lim.Descriptors)
		if !ok {
			return fieldErr("Procs", "auto: %d connections need more than %d processes of %d descriptors each; lower {Storm} or raise the descriptor limit (ulimit -n)", n, MaxProcs, lim.Descriptors)
		}
		p.Procs = procs
	}
	if p.Procs == 0 {
		p.Procs = 1
	}
	if p.Procs > 1 && p.Storm == nil && p.Conns < p.Procs {
		return fieldErr("Conns", "%d: fewer than {Procs} %d; every process needs at least one worker", p.Conns, p.Procs)
	}
	if p.Procs > 1 && p.Cycles > 0 && p.Storm == nil && p.Cycles < uint64(p.Procs) {
		return fieldErr("Cycles", "%d: fewer than {Procs} %d; every process needs at least one", p.Cycles, p.Procs)
	}
	return nil
}

// stormDefaultScenario is a storm's scenario when none is given: the
// half-close idiom from the closer's side.
func stormDefaultScenario(c *workload.Closer) workload.Scenario {
	if c == nil {
		return workload.ClientHalfClose
	}
	switch *c {
	case workload.CloserServer:
		return workload.ServerHalfClose
	case workload.CloserBoth:
		return workload.Simultaneous
	}
	return workload.ClientHalfClose
}

// isLocal reports whether a is an address of the namespace the run uses:
// in a fresh namespace only loopback; on the host its interfaces' addresses.
func isLocal(a netip.Addr, isolated bool) bool {
	a = a.Unmap()
	if a.IsLoopback() {
		return true
	}
	if isolated {
		return false
	}
	return hostHasAddr(a)
}
