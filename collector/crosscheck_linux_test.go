package collector

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/closeload/closeload/internal/nstest"
	"github.com/closeload/closeload/report"
	"github.com/closeload/closeload/results"
)

// server accepts connections into a channel; every connection either side
// opens is kept referenced until the test ends, so no finalizer closes one.
type server struct {
	ln    net.Listener
	port  uint16
	conns chan net.Conn
	keep  []net.Conn
}

func newServer(t *testing.T, network, addr string) *server {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ln: ln, port: uint16(ln.Addr().(*net.TCPAddr).Port), conns: make(chan net.Conn, 64)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(s.conns)
				return
			}
			s.conns <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for _, c := range s.keep {
			c.Close()
		}
		runtime.KeepAlive(s.keep)
	})
	return s
}

// pair dials the server and returns both ends.
func (s *server) pair(t *testing.T, network, addr string) (client, srv net.Conn) {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-s.conns:
		return c, a
	case <-time.After(5 * time.Second):
		t.Fatal("accept timed out")
	}
	return nil, nil
}

func readEOF(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("reading to EOF: %v", err)
	}
}

// ssCounts counts `ss -tan` rows by state (closeload's names), only rows
// whose local or peer port is port (all when 0).
func ssCounts(t *testing.T, port uint16) map[string]uint64 {
	t.Helper()
	out, err := exec.Command("ss", "-tan").Output()
	if err != nil {
		t.Skipf("ss (iproute2) not usable: %v", err)
	}
	m := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 || f[0] == "State" {
			continue
		}
		name, ok := StateFromSS(f[0])
		if !ok {
			t.Fatalf("ss state %q unknown", f[0])
		}
		if port != 0 && ssPort(f[3]) != port && ssPort(f[4]) != port {
			continue
		}
		m[name]++
	}
	return m
}

func ssPort(addr string) uint16 {
	p, _ := strconv.Atoi(addr[strings.LastIndexByte(addr, ':')+1:])
	return uint16(p)
}

func totals(m map[string]results.StateCount) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range m {
		out[k] = v.Total
	}
	return out
}

// waitStates polls until the netlink count for q satisfies ok (bounded).
func waitStates(t *testing.T, q StateQuery, ok func(map[string]results.StateCount) bool) map[string]results.StateCount {
	t.Helper()
	var m map[string]results.StateCount
	var err error
	for range 100 {
		if m, err = CountStates(q); err != nil {
			t.Fatal(err)
		}
		if ok(m) {
			return m
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("states never settled: %v", m)
	return nil
}

// TestSourcesAgree makes known numbers of sockets in known states in a
// fresh namespace and checks that sock_diag, /proc and ss count the same.
func TestSourcesAgree(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		const nEst, nTW, nHalf, nOrph, nSrvTW = 20, 300, 10, 15, 5
		p := newServer(t, "tcp4", "127.0.0.1:0")
		addr := p.ln.Addr().String()
		for range nEst { // ESTABLISHED on both ends
			c, s := p.pair(t, "tcp4", addr)
			p.keep = append(p.keep, c, s)
		}
		for range nTW { // client closes first: TIME_WAIT on the client
			c, s := p.pair(t, "tcp4", addr)
			c.Close()
			readEOF(t, s)
			s.Close()
		}
		for range nHalf { // half-closed, descriptor kept: owned FIN_WAIT2 + CLOSE_WAIT
			c, s := p.pair(t, "tcp4", addr)
			c.(*net.TCPConn).CloseWrite()
			readEOF(t, s)
			p.keep = append(p.keep, c, s)
		}
		for range nOrph { // closed, peer never closes: orphaned FIN_WAIT2 + CLOSE_WAIT
			c, s := p.pair(t, "tcp4", addr)
			c.Close()
			readEOF(t, s)
			p.keep = append(p.keep, s)
		}
		// A dual-stack listener: IPv4 peers are IPv6 sockets (::ffff:127.0.0.1);
		// the server closes first, so TIME_WAIT lands in tcp6.
		q := newServer(t, "tcp", "[::]:0")
		for range nSrvTW {
			c, s := q.pair(t, "tcp4", fmt.Sprintf("127.0.0.1:%d", q.port))
			s.Close()
			readEOF(t, c)
			c.Close()
		}

		want := map[string]results.StateCount{
			"LISTEN": {Total: 1}, "ESTABLISHED": {Total: 2 * nEst}, "TIME_WAIT": {Total: nTW},
			"FIN_WAIT2": {Total: nHalf + nOrph, Orphaned: nOrph}, "CLOSE_WAIT": {Total: nHalf + nOrph},
		}
		qp := StateQuery{Source: SourceNetlink, Ports: []uint16{p.port}}
		nl := waitStates(t, qp, func(m map[string]results.StateCount) bool {
			return m["FIN_WAIT2"].Total == nHalf+nOrph && m["ESTABLISHED"].Total == 2*nEst
		})
		// Under churn a few closes may end in RST instead of TIME_WAIT.
		if tw := nl["TIME_WAIT"].Total; tw < nTW*97/100 || tw > nTW {
			t.Errorf("TIME_WAIT %d, want %d (at least 97%%)", tw, nTW)
		}
		want["TIME_WAIT"] = nl["TIME_WAIT"]
		if !equalStates(nl, want) {
			t.Errorf("sock_diag, port %d: %v\nwant %v", p.port, nl, want)
		}

		pr, err := CountStates(StateQuery{Source: SourceProc, Ports: []uint16{p.port}})
		if err != nil {
			t.Fatal(err)
		}
		if !equalStates(pr, nl) {
			t.Errorf("port %d: /proc %v\nsock_diag %v", p.port, pr, nl)
		}
		if ss := ssCounts(t, p.port); !maps.Equal(ss, totals(nl)) {
			t.Errorf("port %d: ss %v\nsock_diag %v", p.port, ss, totals(nl))
		}

		// Every socket of the namespace, both ports and both families.
		all, err := CountStates(StateQuery{Source: SourceNetlink})
		if err != nil {
			t.Fatal(err)
		}
		allProc, err := CountStates(StateQuery{Source: SourceProc})
		if err != nil {
			t.Fatal(err)
		}
		if !equalStates(all, allProc) {
			t.Errorf("all sockets: /proc %v\nsock_diag %v", allProc, all)
		}
		if ss := ssCounts(t, 0); !maps.Equal(ss, totals(all)) {
			t.Errorf("all sockets: ss %v\nsock_diag %v", ss, totals(all))
		}

		// The dual-stack port: its sockets are IPv6 only.
		for _, src := range []string{SourceNetlink, SourceProc} {
			v6, err := CountStates(StateQuery{Source: src, Ports: []uint16{q.port}, Families: []int{FamilyIPv6}})
			if err != nil {
				t.Fatal(err)
			}
			if v6["LISTEN"].Total != 1 || v6["TIME_WAIT"].Total < nSrvTW-1 || v6["TIME_WAIT"].Total > nSrvTW {
				t.Errorf("%s: dual-stack port %d in IPv6: %v, want LISTEN 1, TIME_WAIT %d", src, q.port, v6, nSrvTW)
			}
			v4, err := CountStates(StateQuery{Source: src, Ports: []uint16{q.port}, Families: []int{FamilyIPv4}})
			if err != nil {
				t.Fatal(err)
			}
			if v4["LISTEN"].Total != 0 || v4["TIME_WAIT"].Total != 0 {
				t.Errorf("%s: dual-stack port %d in IPv4: %v, want no LISTEN or TIME_WAIT", src, q.port, v4)
			}
		}

		// sockstat tw is per namespace and counts orphaned FIN_WAIT2 too:
		// both are timewait mini-sockets.
		m, err := ReadCounters("")
		if err != nil {
			t.Fatal(err)
		}
		if tw, want := m["Sockstat.TCP.tw"], int64(all["TIME_WAIT"].Total+all["FIN_WAIT2"].Orphaned); tw != want {
			t.Errorf("sockstat tw %d, want TIME_WAIT + orphaned FIN_WAIT2 = %d", tw, want)
		}
	})
}

// TestCountersAgreeWithNstat checks counter deltas against nstat's for the
// same interval in a quiet namespace.
func TestCountersAgreeWithNstat(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		if _, err := exec.LookPath("nstat"); err != nil {
			t.Skip("nstat (iproute2) not installed")
		}
		hist := filepath.Join(t.TempDir(), "nstat.hist")
		nstat := func(args ...string) []byte {
			cmd := exec.Command("nstat", args...)
			cmd.Env = append(os.Environ(), "NSTAT_HISTORY="+hist)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("nstat %v: %v", args, err)
			}
			return out
		}
		p := newServer(t, "tcp4", "127.0.0.1:0")
		// Warm up, then let timers settle before the interval.
		c, s := p.pair(t, "tcp4", p.ln.Addr().String())
		c.Close()
		s.Close()
		time.Sleep(300 * time.Millisecond)

		nstat("-n")
		before, err := ReadCounters("")
		if err != nil {
			t.Fatal(err)
		}
		const n = 50
		for i := range n {
			c, s := p.pair(t, "tcp4", p.ln.Addr().String())
			if i%5 == 0 { // abortive close: RST, TCPAbortOnData... not on an idle socket: OutRsts
				c.(*net.TCPConn).SetLinger(0)
			}
			c.Close()
			s.SetReadDeadline(time.Now().Add(5 * time.Second))
			io.Copy(io.Discard, s)
			s.Close()
		}
		time.Sleep(300 * time.Millisecond)
		after, err := ReadCounters("")
		if err != nil {
			t.Fatal(err)
		}
		out := nstat("-z")

		theirs := map[string]int64{}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 2 || strings.HasPrefix(f[0], "#") {
				continue
			}
			v, err := strconv.ParseInt(f[1], 10, 64)
			if err == nil {
				theirs[f[0]] = v
			}
		}
		compared := 0
		for k, v := range after {
			if IsGauge(k) || !strings.HasPrefix(k, "Tcp") {
				continue
			}
			name := strings.Replace(k, ".", "", 1) // TcpExt.TW -> TcpExtTW
			nv, ok := theirs[name]
			if !ok {
				continue
			}
			compared++
			if d := v - before[k]; d != nv {
				t.Errorf("%s: delta %d, nstat %d", k, d, nv)
			}
		}
		if compared < 50 {
			t.Fatalf("only %d counters compared with nstat", compared)
		}
		if d := after["Tcp.ActiveOpens"] - before["Tcp.ActiveOpens"]; d != n {
			t.Errorf("Tcp.ActiveOpens delta %d, want %d", d, n)
		}
		if d := after["Tcp.OutRsts"] - before["Tcp.OutRsts"]; d < n/5 {
			t.Errorf("Tcp.OutRsts delta %d, want at least %d (linger 0 closes)", d, n/5)
		}
	})
}

// TestSamplerInNamespace runs the Sampler over churn and checks the series,
// peaks and counter deltas it records.
func TestSamplerInNamespace(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		p := newServer(t, "tcp4", "127.0.0.1:0")
		other := newServer(t, "tcp4", "127.0.0.1:0")
		var cycles atomic.Uint64
		var seen int
		s, err := NewSampler(SamplerConfig{
			Interval: 20 * time.Millisecond,
			MaxCPU:   -1, // every sample counts states, however loaded the machine
			Ports:    []uint16{p.port},
			Workload: func() WorkloadCounts { return WorkloadCounts{Cycles: cycles.Load(), Attempts: cycles.Load()} },
			OnSample: func(results.Sample) { seen++ },
		})
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		const n = 200
		for range n {
			c, sc := p.pair(t, "tcp4", p.ln.Addr().String())
			c.Close()
			readEOF(t, sc)
			sc.Close()
			cycles.Add(1)
		}
		// Sockets on another port are not the run's.
		for range 20 {
			c, sc := other.pair(t, "tcp4", other.ln.Addr().String())
			c.Close()
			readEOF(t, sc)
			sc.Close()
		}
		time.Sleep(100 * time.Millisecond)
		r := s.Stop()
		if r2 := s.Stop(); len(r2.Series) != len(r.Series) {
			t.Fatal("a second Stop must return the same result")
		}
		if r.Health.Source != SourceNetlink || r.Health.Samples != len(r.Series) || r.Health.Samples < 3 || seen != len(r.Series) {
			t.Fatalf("health %+v, %d samples, %d notified", r.Health, len(r.Series), seen)
		}
		if tw := r.Peaks["TIME_WAIT"].Total; tw < n*97/100 || tw > n {
			t.Errorf("peak TIME_WAIT %d, want about %d (the other port's excluded)", tw, n)
		}
		last := r.Series[len(r.Series)-1]
		if last.States["LISTEN"].Total != 1 {
			t.Errorf("last sample states %v", last.States)
		}
		var sumCycles, sumOpens uint64
		for _, x := range r.Series {
			sumCycles += x.Cycles
			sumOpens += uint64(x.Counters["Tcp.ActiveOpens"])
			if len(x.Missing) > 0 {
				t.Errorf("sample at %.3fs missing %v", x.Elapsed, x.Missing)
			}
		}
		if sumCycles != n {
			t.Errorf("cycles over the series %d, want %d", sumCycles, n)
		}
		deltas := map[string]results.CounterDelta{}
		for _, d := range r.Counters {
			deltas[d.Name] = d
		}
		if d := deltas["Tcp.ActiveOpens"]; d.Delta != n+20 || d.Scope != ScopeNetns || uint64(d.Delta) != sumOpens {
			t.Errorf("Tcp.ActiveOpens %+v, series sum %d, want %d", d, sumOpens, n+20)
		}
		if d := deltas["Sockstat.TCP.orphan"]; d.Scope != ScopeGlobal {
			t.Errorf("Sockstat.TCP.orphan scope %q", d.Scope)
		}
		var b strings.Builder
		report.WriteKernelSummary(&b, runOf(r))
		for _, want := range []string{"sock_diag", fmt.Sprintf("ports %d", p.port), "TIME_WAIT", "orphaned", "TWRecycled", "OutRsts"} {
			if !strings.Contains(b.String(), want) {
				t.Errorf("summary lacks %q:\n%s", want, b.String())
			}
		}
		t.Log("\n" + b.String())
	})
}

// TestNetlinkInAnotherNamespace counts through NetnsPath from the parent's
// namespace, as the benchmarks do.
func TestNetlinkInAnotherNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		nstest.Unavailable(t, "joining another network namespace needs root")
		return
	}
	cmd := exec.Command("sleep", "30")
	cmd.SysProcAttr = nstest.Attr()
	if err := cmd.Start(); err != nil {
		nstest.Unavailable(t, fmt.Sprintf("cannot create a network namespace: %v", err))
		return
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pid := cmd.Process.Pid
	m, err := CountStates(StateQuery{Source: SourceNetlink, NetnsPath: fmt.Sprintf("/proc/%d/ns/net", pid)})
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 0 {
		t.Fatalf("a fresh namespace has sockets: %v", m)
	}
	if _, err := CountStates(StateQuery{Source: SourceNetlink, NetnsPath: "/nonexistent"}); !errors.Is(err, ErrNetlink) {
		t.Fatalf("bad namespace path: %v", err)
	}
}
