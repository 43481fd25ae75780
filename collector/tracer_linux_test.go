package collector_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"

	"errors"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/internal/nstest"
	"github.com/closeload/closeload/report"
	"github.com/closeload/closeload/results"
	"github.com/closeload/closeload/workload"
)

// openTracer opens a tracer for targets, skipping when eBPF is not
// permitted unless the namespace tests are required.
func openTracer(t *testing.T, targets []collector.TracerTarget) *collector.Tracer {
	t.Helper()
	return openTracerConfig(t, collector.TracerConfig{Targets: targets})
}

// openTracerConfig opens a tracer of any config, skipping the same way.
func openTracerConfig(t *testing.T, cfg collector.TracerConfig) *collector.Tracer {
	t.Helper()
	tr, err := collector.OpenTracer(cfg)
	if errors.Is(err, collector.ErrTracerUnavailable) && os.Getuid() != 0 && os.Getenv(nstest.RequireEnv) != "1" {
		t.Skipf("tracer: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// scenarioTarget starts the built-in target serving scenarios, one port
// each, and returns it with the tracer's targets.
func scenarioTarget(t *testing.T, hold time.Duration, scenarios ...workload.Scenario) (*workload.Target, []collector.TracerTarget) {
	t.Helper()
	tg, err := workload.StartTarget(workload.TargetConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Scenarios: scenarios,
		Acceptors: 4, RequestSize: 64, ResponseSize: 100, Hold: hold, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tg.Close)
	var tt []collector.TracerTarget
	for _, s := range scenarios {
		a, _ := tg.Addr(s)
		tt = append(tt, collector.TracerTarget{Port: a.Port(), Scenario: s.String()})
	}
	return tg, tt
}

// drive runs n cycles of scenario s against tg and waits (bounded) until
// the target has served them all.
func drive(t *testing.T, tg *workload.Target, s workload.Scenario, n uint64, hold time.Duration) workload.Counts {
	t.Helper()
	c, err := driveErr(tg, s, n, hold)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func driveErr(tg *workload.Target, s workload.Scenario, n uint64, hold time.Duration) (workload.Counts, error) {
	a, _ := tg.Addr(s)
	cfg := workload.Config{Mix: workload.NewMix(s), Targets: []netip.AddrPort{a}, Conns: 4, Cycles: n, Duration: 30 * time.Second,
		Sources:     workload.DefaultSources(netip.MustParseAddr("127.0.0.1"))[:8],
		RequestSize: 64, ResponseSize: 100, Hold: hold, Timeout: 5 * time.Second}
	pool, err := workload.NewPool(cfg, collector.NewLatencySink(1))
	if err != nil {
		return workload.Counts{}, err
	}
	if err := pool.Run(context.Background()); err != nil {
		return workload.Counts{}, err
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c := tg.Counts(s)
		if c.Cycles+c.ErrorTotal() >= n {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return pool.Counts(0), nil
}

func between(t *testing.T, what string, got, lo, hi uint64) {
	t.Helper()
	if got < lo || got > hi {
		t.Errorf("%s = %d, want %d..%d", what, got, lo, hi)
	}
}

func group(t *testing.T, ev *results.KernelEvents, scenario, side string) results.EventGroup {
	t.Helper()
	g := ev.Group(scenario, side)
	if g == nil {
		t.Fatalf("no events for %s %s; have %+v", scenario, side, ev.Groups)
	}
	return *g
}

var allScenarios = []workload.Scenario{
	workload.ClientHalfClose, workload.ServerHalfClose, workload.Simultaneous, workload.FullClose, workload.Linger0,
	workload.UnreadClose, workload.OrphanFinWait2, workload.CloseWaitLeak, workload.StreamEcho,
}

// snmpOutRsts reads Tcp OutRsts of the caller's network namespace.
func snmpOutRsts(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		t.Fatal(err)
	}
	var head []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Tcp:" {
			continue
		}
		if head == nil {
			head = f
			continue
		}
		for i, name := range head {
			if name == "OutRsts" && i < len(f) {
				v, err := strconv.ParseUint(f[i], 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
		}
	}
	t.Fatal("no Tcp OutRsts in /proc/net/snmp")
	return 0
}

func sum(m map[string]uint64) (n uint64) {
	for _, v := range m {
		n += v
	}
	return n
}

// TestTracerScenarios drives every scenario of the catalogue against the
// built-in target and checks the kernel's own account of each choreography,
// side by side, as ranges.
func TestTracerScenarios(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		const n = 200
		lo, hi := uint64(n*9/10), uint64(n)
		tg, tt := scenarioTarget(t, 50*time.Millisecond, allScenarios...)
		rst0 := snmpOutRsts(t)
		tr := openTracer(t, tt)
		for _, s := range allScenarios {
			drive(t, tg, s, n, 50*time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond) // last LAST_ACK -> CLOSE
		ev, err := tr.Read()
		if err != nil {
			t.Fatal(err)
		}
		rst1 := snmpOutRsts(t)
		t.Logf("events the kernel skipped (recursion guard): %d", ev.Missed)
		const C, T = results.SideClient, results.SideTarget
		type tr3 struct{ side, from, to string }
		opener := []tr3{{C, "CLOSE", "SYN_SENT"}, {C, "SYN_SENT", "ESTABLISHED"}, {T, "LISTEN", "SYN_RECV"}, {T, "SYN_RECV", "ESTABLISHED"}}
		activeClient := []tr3{{C, "ESTABLISHED", "FIN_WAIT1"}, {C, "FIN_WAIT1", "FIN_WAIT2"}, {C, "FIN_WAIT2", "CLOSE"},
			{T, "ESTABLISHED", "CLOSE_WAIT"}, {T, "CLOSE_WAIT", "LAST_ACK"}, {T, "LAST_ACK", "CLOSE"}}
		activeTarget := []tr3{{T, "ESTABLISHED", "FIN_WAIT1"}, {T, "FIN_WAIT1", "FIN_WAIT2"}, {T, "FIN_WAIT2", "CLOSE"},
			{C, "ESTABLISHED", "CLOSE_WAIT"}, {C, "CLOSE_WAIT", "LAST_ACK"}, {C, "LAST_ACK", "CLOSE"}}
		abortClient := []tr3{{C, "ESTABLISHED", "CLOSE"}, {T, "ESTABLISHED", "CLOSE"}}
		cases := []struct {
			s         workload.Scenario
			want      []tr3
			twSide    string // side whose sockets hand over to TIME_WAIT
			rstFrom   string // side sending the resets ("": none)
			rstReason string
			rstRecvSt string // state of the receiving socket
		}{
			{workload.ClientHalfClose, activeClient, C, "", "", ""},
			{workload.ServerHalfClose, activeTarget, T, "", "", ""},
			{workload.FullClose, activeClient, C, "", "", ""},
			{workload.StreamEcho, activeClient, C, "", "", ""},
			{workload.OrphanFinWait2, activeClient, C, "", "", ""},
			{workload.CloseWaitLeak, activeClient, C, "", "", ""},
			{workload.Linger0, abortClient, "", C, "TCP_STATE", "ESTABLISHED"},
			{workload.UnreadClose, abortClient, "", T, "TCP_ABORT_ON_CLOSE", "ESTABLISHED"},
		}
		// The aborting side sent its RSTs from ESTABLISHED.
		sentIn := map[workload.Scenario]string{workload.Linger0: "ESTABLISHED", workload.UnreadClose: "ESTABLISHED"}
		for _, c := range cases {
			t.Run(c.s.String(), func(t *testing.T) {
				// The kernel skips a program it finds another BPF program
				// running on the CPU (a softirq interrupting one): counts may
				// be low by what it says it missed, no more.
				lo := lo - min(lo, ev.Missed)
				for _, w := range append(opener, c.want...) {
					g := group(t, ev, c.s.String(), w.side)
					between(t, w.side+" "+w.from+"->"+w.to, g.Count(w.from, w.to), lo, hi)
				}
				if t.Failed() {
					for _, side := range []string{C, T} {
						g := group(t, ev, c.s.String(), side)
						t.Logf("%s %s: transitions %v resets sent %v received %v handovers %v; missed %d", c.s, side, g.Transitions, g.ResetsSent, g.ResetsReceived, g.TimeWaitHandovers, ev.Missed)
					}
				}
				cl, tg := group(t, ev, c.s.String(), C), group(t, ev, c.s.String(), T)
				if c.twSide != "" {
					g := group(t, ev, c.s.String(), c.twSide)
					between(t, c.twSide+" handovers", sum(g.TimeWaitHandovers), lo, hi)
				}
				if c.rstFrom == "" {
					between(t, "resets sent", sum(cl.ResetsSent)+sum(tg.ResetsSent), 0, n/20)
					return
				}
				snd, rcv := cl, tg
				if c.rstFrom == T {
					snd, rcv = tg, cl
				}
				// A connection may see a second RST (a late segment hitting the
				// closed socket): a few more than one per connection.
				rhi := hi + n/20
				between(t, "resets sent", sum(snd.ResetsSent), lo, rhi)
				between(t, fmt.Sprintf("resets sent in %s (%v)", sentIn[c.s], snd.ResetsSent), snd.ResetsSent[sentIn[c.s]], lo, rhi)
				between(t, "reason "+c.rstReason, snd.ResetReasons[c.rstReason], lo, rhi)
				between(t, "resets received in "+c.rstRecvSt, rcv.ResetsReceived[c.rstRecvSt], lo, rhi)
				between(t, "no handover after a reset", sum(snd.TimeWaitHandovers)+sum(rcv.TimeWaitHandovers), 0, n/20)
			})
		}
		t.Run("simultaneous", func(t *testing.T) {
			// Both sides send a FIN at once: each connection's two sockets
			// go FIN_WAIT1 (or CLOSE_WAIT when the peer's FIN came first)
			// and at least one of them hands over to TIME_WAIT, from
			// FIN_WAIT2 or through CLOSING.
			cl, tg := group(t, ev, "simultaneous", C), group(t, ev, "simultaneous", T)
			for _, g := range []results.EventGroup{cl, tg} {
				between(t, g.Side+" leaving ESTABLISHED", g.Count("ESTABLISHED", "FIN_WAIT1")+g.Count("ESTABLISHED", "CLOSE_WAIT"), lo, hi)
			}
			fw1 := cl.Count("ESTABLISHED", "FIN_WAIT1") + tg.Count("ESTABLISHED", "FIN_WAIT1")
			between(t, "FIN_WAIT1 entered on both sides", fw1, lo, 2*hi)
			between(t, "handovers", sum(cl.TimeWaitHandovers)+sum(tg.TimeWaitHandovers), lo, 2*hi)
			closing := cl.Count("FIN_WAIT1", "CLOSING") + tg.Count("FIN_WAIT1", "CLOSING")
			between(t, "CLOSING handovers", cl.TimeWaitHandovers["CLOSING"]+tg.TimeWaitHandovers["CLOSING"], closing*9/10, closing)
		})
		t.Run("resets-vs-OutRsts", func(t *testing.T) {
			var sent uint64
			for _, g := range ev.Groups {
				sent += sum(g.ResetsSent)
			}
			out := rst1 - rst0
			if sent == 0 || sent > out || sent < out*95/100 {
				t.Errorf("tracer counted %d resets sent, Tcp OutRsts moved by %d", sent, out)
			}
		})
		if ev.Untracked != 0 {
			t.Errorf("untracked transitions: %d", ev.Untracked)
		}
	})
}

// TestTracerDwell checks the time in CLOSE_WAIT against a server that
// sleeps a known time between the client's FIN and its own close.
func TestTracerDwell(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		const n, sleep = 20, 200 * time.Millisecond
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		port := uint16(ln.Addr().(*net.TCPAddr).Port)
		tr := openTracer(t, []collector.TracerTarget{{Port: port, Scenario: "sleepy"}})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n; i++ {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer c.Close()
					c.SetDeadline(time.Now().Add(5 * time.Second))
					io.Copy(io.Discard, c)
					time.Sleep(sleep)
				}()
			}
		}()
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				c.(*net.TCPConn).CloseWrite()
				io.Copy(io.Discard, c)
			}()
		}
		wg.Wait()
		time.Sleep(100 * time.Millisecond)
		ev, err := tr.Read()
		if err != nil {
			t.Fatal(err)
		}
		d, ok := group(t, ev, "sleepy", results.SideTarget).Dwell["CLOSE_WAIT"]
		if !ok || d.Count != n {
			t.Fatalf("CLOSE_WAIT dwell %+v, want %d connections", d, n)
		}
		if p50 := time.Duration(d.P50); p50 < sleep*9/10 || p50 > sleep*11/10 {
			t.Errorf("CLOSE_WAIT p50 %v, want %v within 10%%", p50, sleep)
		}
		// The client waited in FIN_WAIT2 for the same close.
		if f := group(t, ev, "sleepy", results.SideClient).Dwell["FIN_WAIT2"]; time.Duration(f.P50) < sleep*9/10 {
			t.Errorf("client FIN_WAIT2 p50 %v, want about %v", time.Duration(f.P50), sleep)
		}
	})
}

// churn makes n client-halfclose-like connections to a fresh listener on
// addr and returns its port.
func churn(t *testing.T, addr string, n int) uint16 {
	t.Helper()
	p, err := churnErr(addr, n)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func churnErr(addr string, n int) (uint16, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < n; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			ln.Close()
			<-done
			return 0, err
		}
		c.(*net.TCPConn).CloseWrite()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, c)
		c.Close()
	}
	<-done
	return uint16(ln.Addr().(*net.TCPAddr).Port), nil
}

// TestTracerFilters checks that only the followed namespace and ports are
// counted: the same port in another namespace and another port in this one
// leave no trace.
func TestTracerFilters(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := uint16(ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
		tr := openTracer(t, []collector.TracerTarget{{Port: port, Scenario: "ours"}})

		// The same port in another, fresh namespace, from a thread of its own.
		errc := make(chan error, 1)
		go func() {
			runtime.LockOSThread() // the thread dies with its namespace
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				errc <- err
				return
			}
			if err := nstest.LoopbackUp(); err != nil {
				errc <- err
				return
			}
			_, err := churnErr(fmt.Sprintf("127.0.0.1:%d", port), 50)
			errc <- err
		}()
		if err := <-errc; err != nil {
			t.Fatalf("other namespace: %v", err)
		}
		other := churn(t, "127.0.0.1:0", 50) // another port here
		if other == port {
			t.Fatal("the other port is ours")
		}
		ev, err := tr.Read()
		if err != nil {
			t.Fatal(err)
		}
		if len(ev.Groups) != 0 {
			t.Fatalf("counted sockets that are not ours: %+v", ev.Groups)
		}
		// And ours are counted: the filter is not simply closed.
		churn(t, fmt.Sprintf("127.0.0.1:%d", port), 50)
		time.Sleep(50 * time.Millisecond)
		if ev, err = tr.Read(); err != nil {
			t.Fatal(err)
		}
		between(t, "our connections", group(t, ev, "ours", results.SideClient).Count("CLOSE", "SYN_SENT"), 50, 50)
		// IPv6 sockets on our port count the same way.
		if _, err := churnErr(fmt.Sprintf("[::1]:%d", port), 20); err != nil {
			t.Logf("no IPv6 loopback here (%v): IPv6 not checked", err)
			return
		}
		time.Sleep(50 * time.Millisecond)
		if ev, err = tr.Read(); err != nil {
			t.Fatal(err)
		}
		between(t, "our connections with IPv6", group(t, ev, "ours", results.SideClient).Count("CLOSE", "SYN_SENT"), 70, 70)
		between(t, "IPv6 target side", group(t, ev, "ours", results.SideTarget).Count("LAST_ACK", "CLOSE"), 70, 70)
	})
}

// TestTracerCensus compares the census derived from the transitions with a
// sock_diag count while connections sit half-closed.
func TestTracerCensus(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		const n, hold = 300, 1500 * time.Millisecond
		tg, tt := scenarioTarget(t, hold, workload.CloseWaitLeak)
		tr := openTracer(t, tt)
		driven := make(chan error, 1)
		go func() { _, err := driveErr(tg, workload.CloseWaitLeak, n, hold); driven <- err }()
		defer func() {
			if err := <-driven; err != nil {
				t.Error(err)
			}
		}()
		deadline := time.Now().Add(hold)
		var cen collector.TracerCensus
		var diag map[string]results.StateCount
		// Compare when nothing moved while sock_diag counted: the census
		// before and after the dump agree.
		for time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			before, err := tr.Census()
			if err != nil {
				t.Fatal(err)
			}
			if diag, err = collector.CountStates(collector.StateQuery{Source: collector.SourceNetlink, Ports: []uint16{tt[0].Port}}); err != nil {
				t.Fatal(err)
			}
			if cen, err = tr.Census(); err != nil {
				t.Fatal(err)
			}
			if maps.EqualFunc(before.Sides, cen.Sides, maps.Equal) && diag["CLOSE_WAIT"].Total >= n*9/10 {
				break
			}
		}
		// The clients' half-closed sockets are mini-sockets by now (sock_diag
		// shows them as orphaned FIN_WAIT2), which the census cannot see;
		// the targets' CLOSE_WAIT sockets are full sockets on both counts.
		got, want := cen.Sides[results.SideTarget]["CLOSE_WAIT"].Total, diag["CLOSE_WAIT"].Total
		if want < n/2 {
			t.Fatalf("sock_diag saw only %d of %d CLOSE_WAIT", want, n)
		}
		if diff := int64(got) - int64(want); diff*100 > int64(want) || -diff*100 > int64(want) {
			t.Errorf("target CLOSE_WAIT: census %d, sock_diag %d (more than 1%% apart)", got, want)
		}
		full := diag["FIN_WAIT2"].Total - diag["FIN_WAIT2"].Orphaned
		if c := cen.Sides[results.SideClient]["FIN_WAIT2"].Total; c != full {
			t.Errorf("client FIN_WAIT2 full sockets: census %d, sock_diag %d", c, full)
		}
		if cen.Sides[results.SideClient]["CLOSE_WAIT"].Total != 0 || cen.Sides[results.SideTarget]["FIN_WAIT2"].Total != 0 {
			t.Errorf("census puts states on the wrong side: %v", cen.Sides)
		}
	})
}

// TestTracerUnprivileged runs OpenTracer as nobody (uid 65534): it must
// fail with ErrTracerUnavailable, saying why.
func TestTracerUnprivileged(t *testing.T) {
	if os.Getenv("CLOSELOAD_TRACER_UNPRIV") == "1" {
		_, err := collector.OpenTracer(collector.TracerConfig{Targets: []collector.TracerTarget{{Port: 8080}}})
		if !errors.Is(err, collector.ErrTracerUnavailable) {
			t.Fatalf("as uid %d: %v, want ErrTracerUnavailable", os.Getuid(), err)
		}
		fmt.Println("REASON:", err)
		return
	}
	if os.Getuid() != 0 {
		_, err := collector.OpenTracer(collector.TracerConfig{Targets: []collector.TracerTarget{{Port: 8080}}})
		if !errors.Is(err, collector.ErrTracerUnavailable) {
			t.Fatalf("not root: %v, want ErrTracerUnavailable", err)
		}
		return
	}
	// A copy of the test binary nobody can execute.
	dir, err := os.MkdirTemp("", "closeload-unpriv")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "collector.test")
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestTracerUnprivileged$", "-test.count=1")
	cmd.Env = append(os.Environ(), "CLOSELOAD_TRACER_UNPRIV=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("as nobody: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "REASON: "+collector.ErrTracerUnavailable.Error()) {
		t.Fatalf("no reason printed:\n%s", out)
	}
	t.Logf("%s", out)
}

// TestSamplerSides samples a close-wait-leak hold with each source and
// checks the side split: CLOSE_WAIT is the target's, FIN_WAIT2 the client's.
func TestSamplerSides(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		const n, hold = 100, 800 * time.Millisecond
		for _, src := range []string{collector.SourceNetlink, collector.SourceProc, collector.SourceEBPF} {
			t.Run(src, func(t *testing.T) {
				tg, tt := scenarioTarget(t, hold, workload.CloseWaitLeak)
				port := tt[0].Port
				cfg := collector.SamplerConfig{Source: src, Interval: 50 * time.Millisecond, Ports: []uint16{port}, TargetPorts: []uint16{port}}
				if src == collector.SourceEBPF {
					cfg.Tracer = &collector.TracerConfig{Targets: tt}
				}
				s, err := collector.NewSampler(cfg)
				if err != nil {
					t.Fatal(err)
				}
				s.Start()
				drive(t, tg, workload.CloseWaitLeak, n, hold)
				time.Sleep(hold + 200*time.Millisecond) // the target closes: clients reach TIME_WAIT
				r := s.Stop()
				if r.Health.Source != src {
					t.Errorf("source %q, want %q (%s)", r.Health.Source, src, r.Health.TracerReason)
				}
				// /proc/net/tcp is no snapshot: a walk of a changing table
				// can list a socket twice, so its peak may pass n a little.
				top := uint64(n)
				if src == collector.SourceProc {
					top = n * 6 / 5
				}
				between(t, "peak target CLOSE_WAIT", r.PeakSides[results.SideTarget]["CLOSE_WAIT"].Total, n/2, top)
				between(t, "peak client CLOSE_WAIT", r.PeakSides[results.SideClient]["CLOSE_WAIT"].Total, 0, 0)
				between(t, "peak target FIN_WAIT2", r.PeakSides[results.SideTarget]["FIN_WAIT2"].Total, 0, 0)
				// TIME_WAIT comes from a socket count with every source.
				between(t, "peak client TIME_WAIT", r.PeakSides[results.SideClient]["TIME_WAIT"].Total, n*9/10, n)
				between(t, "peak target TIME_WAIT", r.PeakSides[results.SideTarget]["TIME_WAIT"].Total, 0, 0)
				if src == collector.SourceEBPF {
					if r.Events == nil {
						t.Fatal("no kernel events from the tracer")
					}
					between(t, "client opens", group(t, r.Events, "close-wait-leak", results.SideClient).Count("CLOSE", "SYN_SENT"), n, n)
				} else {
					between(t, "peak client FIN_WAIT2", r.PeakSides[results.SideClient]["FIN_WAIT2"].Total, n/2, n)
				}
			})
		}
	})
}

// TestWatchEvents checks that watch shows the tracer's transitions and
// resets per second for a port.
func TestWatchEvents(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		tg, tt := scenarioTarget(t, 0, workload.Linger0)
		w, err := collector.NewWatcher(collector.WatchConfig{Source: collector.SourceEBPF, Ports: []uint16{tt[0].Port}})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		if f := w.Step(); f.Events != nil || f.Err != nil {
			t.Fatalf("first frame: events %v err %v, want none", f.Events, f.Err)
		}
		drive(t, tg, workload.Linger0, 100, 0)
		f := w.Step()
		if f.Err != nil || len(f.Events) != 1 {
			t.Fatalf("events %v err %v", f.Events, f.Err)
		}
		e := f.Events[0]
		if e.Port != tt[0].Port || e.Transitions <= 0 || e.ResetsSent <= 0 || e.ResetsReceived <= 0 || e.TimeWaitHandovers != 0 {
			t.Errorf("linger0 events %+v: want transitions and resets, no hand-over", e)
		}
		var b strings.Builder
		report.WriteWatchLine(&b, f.Data())
		if !strings.Contains(b.String(), "rst_sent=") {
			t.Errorf("watch line without events: %s", b.String())
		}
	})
}
