package workload

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/internal/nstest"
	"golang.org/x/sys/unix"
)

// testServer is an external target played by the test: serve runs for
// every accepted connection on a goroutine of its own. Close ends it and
// every connection it still has.
type testServer struct {
	ln    net.Listener
	serve func(c *net.TCPConn)
	mu    sync.Mutex
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func startServer(t *testing.T, addr string, serve func(c *net.TCPConn)) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{ln: ln, serve: serve, conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.Close)
	return s
}

func (s *testServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c.(*net.TCPConn))
			c.Close()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

func (s *testServer) addr() netip.AddrPort { return s.ln.Addr().(*net.TCPAddr).AddrPort() }

// Close stops accepting and closes every connection; idempotent.
func (s *testServer) Close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// poolAgainst makes a pool of n workers playing scenario sc against addr
// from one source, adjusted by mod.
func poolAgainst(t *testing.T, sc Scenario, addr netip.AddrPort, mod func(*Config)) *Pool {
	t.Helper()
	cfg := Config{Mix: NewMix(sc), Targets: []netip.AddrPort{addr}, Conns: 4, Duration: 20 * time.Second,
		Sources:     []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		RequestSize: 64, ResponseSize: 100, Hold: 50 * time.Millisecond, Timeout: 30 * time.Second,
		Grace: 200 * time.Millisecond, StallTimeout: 500 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	p, err := NewPool(cfg, collector.NewLatencySink(1))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// accounted fails the test unless every attempt of c ended in exactly one
// place.
func accounted(t *testing.T, what string, c Counts) {
	t.Helper()
	if !c.Accounted() {
		t.Errorf("%s: attempts %d != cycles %d + errors %d + unfinished %d (%v)",
			what, c.Attempts, c.Cycles, c.ErrorTotal(), c.UnfinishedTotal(), c.Unfinished)
	}
}

// readToEOF reads c until the peer's FIN or an error.
func drainConn(c net.Conn) { _, _ = io.Copy(io.Discard, c) }

// TestUnfinishedAtStop: connections in flight when the run stops and the
// grace period ends are counted unfinished, in the phase they were in, and
// attempts = completed + errors + unfinished.
func TestUnfinishedAtStop(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		// An asyncio-style server that never closes first: it answers,
		// then waits for the client's FIN, while a full-close client
		// reading a response of unknown length waits for its EOF.
		t.Run("asyncio-drain", func(t *testing.T) {
			srv := startServer(t, "127.0.0.1:0", func(c *net.TCPConn) {
				buf := make([]byte, 64)
				if _, err := io.ReadFull(c, buf); err != nil {
					return
				}
				if _, err := c.Write([]byte("HTTP/1.0 200 OK\r\n\r\nhello")); err != nil {
					return
				}
				drainConn(c)
			})
			p := poolAgainst(t, FullClose, srv.addr(), func(c *Config) {
				c.Duration, c.ResponseSize = 300*time.Millisecond, 0
			})
			if err := p.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			c := p.Total()
			accounted(t, "client", c)
			if c.Cycles != 0 || c.ErrorTotal() != 0 || c.Unfinished[StopDrain] != 4 || c.Attempts != 4 {
				t.Errorf("cycles %d errors %v unfinished %v attempts %d, want 0, none, 4 in drain, 4",
					c.Cycles, c.Errors, c.Unfinished, c.Attempts)
			}
			if g := p.Grace(); g < 200*time.Millisecond {
				t.Errorf("grace spent %v, want the whole grace period (a forced stop)", g)
			}
		})
		// A second interrupt: Abort cuts the grace period short, and the
		// connections it cut are unfinished.
		t.Run("abort-grace", func(t *testing.T) {
			srv := startServer(t, "127.0.0.1:0", func(c *net.TCPConn) { drainConn(c) })
			p := poolAgainst(t, FullClose, srv.addr(), func(c *Config) {
				c.Duration, c.ResponseSize, c.Grace = time.Hour, 0, time.Hour
			})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx) }()
			for i := 0; i < 500 && p.LiveTotal().Attempts < 4; i++ {
				time.Sleep(10 * time.Millisecond)
			}
			cancel()
			p.Abort()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("Run: %v, want context.Canceled", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run still waits out the grace period after Abort")
			}
			c := p.Total()
			accounted(t, "client", c)
			if c.Unfinished[StopFirstByte] != 4 {
				t.Errorf("unfinished %v, want 4 in first_byte", c.Unfinished)
			}
		})
		// The same server, waiting for the FIN before it answers at all.
		t.Run("asyncio-first-byte", func(t *testing.T) {
			srv := startServer(t, "127.0.0.1:0", func(c *net.TCPConn) { drainConn(c) })
			p := poolAgainst(t, FullClose, srv.addr(), func(c *Config) {
				c.Duration, c.ResponseSize = 300*time.Millisecond, 0
			})
			if err := p.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			c := p.Total()
			accounted(t, "client", c)
			if c.Unfinished[StopFirstByte] != 4 || c.Attempts != 4 {
				t.Errorf("unfinished %v attempts %d, want 4 in first_byte", c.Unfinished, c.Attempts)
			}
		})
		// A server that serves, then stalls: the connections it accepted
		// in flight are unfinished, and the measured window ends at the
		// stop, not after the grace period.
		t.Run("stalled-at-stop", func(t *testing.T) {
			var served atomic.Int64
			release := make(chan struct{})
			srv := startServer(t, "127.0.0.1:0", func(c *net.TCPConn) {
				if served.Add(1) > 300 {
					<-release
					return
				}
				drainConn(c)
				_, _ = c.Write(make([]byte, 100))
			})
			defer close(release)
			p := poolAgainst(t, ClientHalfClose, srv.addr(), func(c *Config) {
				c.Duration = time.Second
				c.Sources = DefaultSources(netip.MustParseAddr("127.0.0.1"))[:8]
			})
			t0 := time.Now()
			if err := p.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			elapsed := time.Since(t0)
			c := p.Total()
			accounted(t, "client", c)
			if c.Unfinished[StopDrain] != 4 {
				t.Errorf("unfinished %v, want the 4 stalled connections in drain", c.Unfinished)
			}
			atLeast(t, "cycles before the stall", c.Cycles, 290)
			atMost(t, "cycles before the stall", c.Cycles, 300)
			start, end := p.Window()
			if elapsed-end.Sub(start) < 200*time.Millisecond {
				t.Errorf("window %v of a %v run: the grace period is in it", end.Sub(start), elapsed)
			}
		})
		// The warm-up is subtracted exactly: connections ending in it
		// leave every figure, those spanning its end stay whole.
		t.Run("warm-up", func(t *testing.T) {
			srv := startServer(t, "127.0.0.1:0", func(c *net.TCPConn) {
				drainConn(c)
				_, _ = c.Write(make([]byte, 100))
			})
			p := poolAgainst(t, ClientHalfClose, srv.addr(), func(c *Config) {
				c.Warmup, c.Duration = 200*time.Millisecond, 300*time.Millisecond
				c.Sources = DefaultSources(netip.MustParseAddr("127.0.0.1"))[:8]
			})
			if err := p.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			c, live := p.Total(), p.LiveTotal()
			accounted(t, "measured", c)
			accounted(t, "live", live)
			atLeast(t, "measured cycles", c.Cycles, 1)
			atLeast(t, "warm-up cycles", live.Cycles-c.Cycles, 1)
		})
		// The built-in target counts what it was serving when closed.
		t.Run("target-closed-mid-request", func(t *testing.T) {
			target, err := StartTarget(TargetConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"),
				Scenarios: []Scenario{FullClose}, Acceptors: 2, RequestSize: 64, ResponseSize: 100, Timeout: 30 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer target.Close()
			for range 2 {
				c, err := net.Dial("tcp4", target.Addrs()[0].String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
			}
			for i := 0; i < 500 && target.Counts(FullClose).Attempts < 2; i++ {
				time.Sleep(10 * time.Millisecond)
			}
			target.Close()
			tc := target.Counts(FullClose)
			accounted(t, "target", tc)
			if tc.Unfinished[StopFirstByte] != 2 {
				t.Errorf("target unfinished %v, want 2 in first_byte", tc.Unfinished)
			}
		})
	})
}

// faultOf fails the test unless err is a FaultError of class want.
func faultOf(t *testing.T, err error, want ErrorClass) *FaultError {
	t.Helper()
	var fe *FaultError
	if !errors.Is(err, ErrUnrecoverable) || !errors.As(err, &fe) {
		t.Fatalf("Run returned %v, want a fault (%s)", err, want)
	}
	if fe.Class != want {
		t.Fatalf("fault %v, want class %s", fe, want)
	}
	return fe
}

// TestFaultsStopTheRun: a closed loop meeting a fault it cannot recover
// from backs off and stops with its reason instead of spinning.
func TestFaultsStopTheRun(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		t.Run("ports-exhausted", func(t *testing.T) {
			for k, v := range map[string]string{"ip_local_port_range": "40000 40099", "tcp_tw_reuse": "0"} {
				path := "/proc/sys/net/ipv4/" + k
				old, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(v), 0); err != nil {
					t.Fatal(err)
				}
				// The namespace's own; back for the next subtests.
				t.Cleanup(func() { _ = os.WriteFile(path, old, 0) })
			}
			target, err := StartTarget(TargetConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"),
				Scenarios: []Scenario{ClientHalfClose}, Acceptors: 4, RequestSize: 64, ResponseSize: 100, Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer target.Close()
			p := poolAgainst(t, ClientHalfClose, target.Addrs()[0], nil)
			fe := faultOf(t, p.Run(context.Background()), ErrAddrNotAvailable)
			c := p.Total()
			accounted(t, "client", c)
			// Client TIME_WAIT holds every port: about 100 cycles, then
			// none. Spinning made ~50k errors per second; the backoff
			// allows a few dozen per worker per second.
			atLeast(t, "cycles", c.Cycles, 90)
			atMost(t, "cycles", c.Cycles, 100)
			atLeast(t, "addr-not-available", c.Errors[ErrAddrNotAvailable], 4*backoffAfter)
			atMost(t, "addr-not-available", c.Errors[ErrAddrNotAvailable], 2000)
			atLeast(t, "fault count", fe.Count, 1)
		})
		t.Run("every-connection-reset", func(t *testing.T) {
			srv := startServer(t, "127.0.0.1:0", func(c *net.TCPConn) { _ = c.SetLinger(0) })
			p := poolAgainst(t, ClientHalfClose, srv.addr(), nil)
			faultOf(t, p.Run(context.Background()), ErrReset)
			c := p.Total()
			accounted(t, "client", c)
			if c.Cycles != 0 {
				t.Errorf("%d cycles completed against a server resetting all", c.Cycles)
			}
			atMost(t, "resets", c.Errors[ErrReset], 2000)
		})
		t.Run("refused-stop", func(t *testing.T) {
			srv := startServer(t, "127.0.0.1:0", func(c *net.TCPConn) {})
			addr := srv.addr()
			srv.Close()
			p := poolAgainst(t, ClientHalfClose, addr, nil)
			faultOf(t, p.Run(context.Background()), ErrRefused)
			c := p.Total()
			accounted(t, "client", c)
			atMost(t, "refused", c.Errors[ErrRefused], 2000)
		})
	})
}

// TestDescriptorExhaustion: a run short of descriptors stops with its
// reason and leaves the collector's reserve alone.
func TestDescriptorExhaustion(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		var old unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
			t.Fatal(err)
		}
		low := old
		low.Cur = 256
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = unix.Setrlimit(unix.RLIMIT_NOFILE, &old) })

		target, err := StartTarget(TargetConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"),
			Scenarios: []Scenario{CloseWaitLeak}, Acceptors: 4, Hold: time.Second, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer target.Close()

		// ulimit -n 256 with 200 close-wait-leak workers: more than the
		// limit less the reserve can ever hold; refused before a socket.
		t.Run("too-many-workers", func(t *testing.T) {
			p := poolAgainst(t, CloseWaitLeak, target.Addrs()[0], func(c *Config) { c.Conns, c.Hold = 200, time.Second })
			fe := faultOf(t, p.Run(context.Background()), ErrTooManyFiles)
			if fe.Detail == "" {
				t.Errorf("fault %v names no detail", fe)
			}
			if c := p.Total(); c.Attempts != 0 {
				t.Errorf("%d connections attempted", c.Attempts)
			}
		})
		// Descriptors taken by something else in the process: every
		// socket() fails with EMFILE, and the run stops.
		t.Run("taken-elsewhere", func(t *testing.T) {
			p := poolAgainst(t, CloseWaitLeak, target.Addrs()[0], func(c *Config) { c.Hold = time.Second })
			openFDs(t) // the runtime's poller exists before the table is full
			var taken []int
			for len(taken) < 300 {
				fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
				if err != nil {
					break
				}
				taken = append(taken, fd)
			}
			err := p.Run(context.Background())
			for _, fd := range taken {
				unix.Close(fd)
			}
			fe := faultOf(t, err, ErrTooManyFiles)
			c := p.Total()
			accounted(t, "client", c)
			atLeast(t, "too-many-files", c.Errors[ErrTooManyFiles], 4*backoffAfter)
			atMost(t, "too-many-files", c.Errors[ErrTooManyFiles], 2000)
			if fe.Example == "" {
				t.Errorf("fault %v has no example message", fe)
			}
		})
	})
}

// TestRefusedContinue: a target restarted during the run is ridden out
// with OnRefused continue, and its outage is reported.
func TestRefusedContinue(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		serve := func(c *net.TCPConn) {
			drainConn(c)
			_, _ = c.Write(make([]byte, 100))
		}
		srv := startServer(t, "127.0.0.1:0", serve)
		addr := srv.addr()
		p := poolAgainst(t, ClientHalfClose, addr, func(c *Config) {
			c.Duration, c.OnRefused = 3*time.Second, RefusedContinue
			c.Sources = DefaultSources(netip.MustParseAddr("127.0.0.1"))[:8]
		})
		restarted := make(chan *testServer, 1)
		go func() {
			defer close(restarted)
			time.Sleep(700 * time.Millisecond)
			srv.Close()
			time.Sleep(time.Second)
			// The listener is back on the same port.
			ln, err := net.Listen("tcp4", addr.String())
			if err != nil {
				t.Error(err)
				return
			}
			s := &testServer{ln: ln, serve: serve, conns: map[net.Conn]bool{}}
			s.wg.Add(1)
			go s.accept()
			restarted <- s
		}()
		err := p.Run(context.Background())
		if s := <-restarted; s != nil {
			s.Close()
		}
		if err != nil {
			t.Fatalf("Run: %v, want the refusals ridden out", err)
		}
		c := p.Total()
		accounted(t, "client", c)
		atLeast(t, "refused", c.Errors[ErrRefused], 1)
		out := p.Outages()
		if len(out) != 1 {
			t.Fatalf("outages %+v, want one", out)
		}
		o := out[0]
		if o.End.IsZero() || !o.End.After(o.Start) || o.Refused == 0 || o.Refused > c.Errors[ErrRefused] {
			t.Errorf("outage %+v (refused %d in all)", o, c.Errors[ErrRefused])
		}
		start, end := p.Window()
		if o.Start.Before(start) || o.End.After(end) {
			t.Errorf("outage %v..%v outside the window %v..%v", o.Start, o.End, start, end)
		}
	})
}

// TestResetClassesAndLostResponses: ENOTCONN from shutdown after the peer's
// reset is a reset; unread-close against an external target counts a
// response cut short by the reset as lost even with no response size.
func TestResetClassesAndLostResponses(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		t.Run("enotconn-after-reset", func(t *testing.T) {
			srv := startServer(t, "127.0.0.1:0", func(c *net.TCPConn) { _ = c.SetLinger(0) })
			fd, err := rawSocket(unix.AF_INET)
			if err != nil {
				t.Fatal(err)
			}
			defer rawClose(fd)
			dst := makeSockaddr(srv.addr())
			if err := sysConnect(fd, &dst, time.Second); err != nil {
				t.Fatal(err)
			}
			rev, err := pollFd(fd, unix.POLLIN, 5*time.Second)
			if err != nil || rev&(unix.POLLERR|unix.POLLHUP) == 0 {
				t.Fatalf("no reset seen: revents %#x, %v", rev, err)
			}
			err = rawShutdown(fd, unix.SHUT_WR)
			if !errors.Is(err, unix.ENOTCONN) {
				t.Fatalf("shutdown after a reset: %v, want ENOTCONN", err)
			}
			if c := Classify(err); c != ErrReset {
				t.Errorf("Classify(%v) = %s, want reset", err, c)
			}
		})
		t.Run("unread-close-external", func(t *testing.T) {
			// Reads part of the request, answers, closes with the rest
			// unread: an RST instead of a FIN.
			srv := startServer(t, "127.0.0.1:0", func(c *net.TCPConn) {
				if _, err := io.ReadFull(c, make([]byte, 32)); err != nil {
					return
				}
				_, _ = c.Write(make([]byte, 100))
				time.Sleep(time.Millisecond)
			})
			p := poolAgainst(t, UnreadClose, srv.addr(), func(c *Config) {
				c.Cycles, c.ResponseSize, c.RequestSize = 200, 0, 64<<10
			})
			if err := p.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			c := p.Total()
			accounted(t, "client", c)
			atLeast(t, "cycles", c.Cycles, 190)
			atLeast(t, "resets", c.Reset, 190)
			atLeast(t, "lost responses", c.Lost, c.Reset)
			atMost(t, "lost responses", c.Lost, c.Cycles)
		})
	})
}

// TestTargetHoldWaits: a full holder of the built-in target shows as waits,
// and every connection is still accounted for.
func TestTargetHoldWaits(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		r := runScenario(t, OrphanFinWait2, 40, func(c *Config, tc *TargetConfig) {
			tc.MaxHeld, tc.Hold = 2, 20*time.Millisecond
		})
		r.settle(t, 40)
		r.target.Close()
		accounted(t, "client", r.counts)
		tc := r.target.Counts(OrphanFinWait2)
		accounted(t, "target", tc)
		w := r.target.HoldWaits()
		atLeast(t, "target hold waits", w.Count, 1)
		if w.Total <= 0 {
			t.Errorf("hold waits %+v: no time waited", w)
		}
	})
}
