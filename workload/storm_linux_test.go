package workload

import (
	"context"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/internal/nstest"
)

type stormRun struct {
	client, target StormSideCounts
	sink           *collector.LatencySink
	port           uint16
	// during is the sides' states sampled while the storm ran, after the
	// close time.
	during []sideStates
}

// runStorm runs a storm of n connections with client and target in this
// process; mid is called once the connections are open and again after
// the close time.
func runStorm(t *testing.T, n int, scen Scenario, closer Closer, mod func(*StormConfig)) stormRun {
	t.Helper()
	fds := openFDs(t)
	sink := collector.NewLatencySink(1)
	cfg := StormConfig{
		N: n, Scenario: scen, Closer: closer, Hold: 300 * time.Millisecond,
		Window: 100 * time.Millisecond, Timeout: 5 * time.Second,
		Sources: DefaultSources(netip.MustParseAddr("127.0.0.1"))[:16],
	}
	if mod != nil {
		mod(&cfg)
	}
	target, err := StartStormTarget(StormTargetConfig{
		Listen: netip.MustParseAddrPort("127.0.0.1:0"), Scenario: scen, Closer: cfg.Closer,
		Window: cfg.Window, Hold: cfg.Hold, ResponseSize: 32,
	}, sink)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	cfg.Target = target.Addr()
	cfg.OnClose = target.ScheduleClose
	st, err := NewStorm(cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	out := stormRun{sink: sink, port: target.Addr().Port()}
	done := make(chan error, 1)
	go func() { done <- st.Run(context.Background()) }()
	// Sample the states a few times while the storm goes on (bounded).
	for range 200 {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			goto over
		case <-time.After(25 * time.Millisecond):
		}
		out.during = append(out.during, readSides(t, out.port))
	}
	t.Fatal("storm did not end within 5 s")
over:
	// The client is done; the target's last connections end just after.
	for range 200 {
		if target.Live() == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	target.Close()
	out.client, out.target = st.Counts(), target.Counts()
	if left := openFDs(t) - fds; left > 0 {
		t.Errorf("%d descriptors left open after the storm", left)
	}
	return out
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	// A pipe makes the runtime create its poller now (an epoll and an
	// eventfd it keeps), not during the storm.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestFinDue(t *testing.T) {
	const hour = int64(time.Hour)
	for _, tc := range []struct {
		name             string
		at, window, i, n int64
		want             int64
	}{
		{"first", 5, 100, 0, 10, 5},
		{"middle", 5, 100, 3, 10, 35},
		{"uneven", 0, 10, 1, 3, 3},
		{"past the planned", 5, 100, 10, 10, 105},
		{"no window", 7, 0, 3, 10, 7},
		// window·i overflows int64: a day's window over 16M connections.
		{"no overflow", 0, 24 * hour, maxTableConns - 1, maxTableConns, 24*hour - (24*hour+maxTableConns-1)/maxTableConns},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := finDue(tc.at, tc.window, tc.i, tc.n); got != tc.want {
				t.Errorf("finDue(%d, %d, %d, %d) = %d, want %d", tc.at, tc.window, tc.i, tc.n, got, tc.want)
			}
		})
	}
}

// peak is the most sockets of a side in state seen in any sample.
func peak(samples []sideStates, client bool, state string) int {
	m := 0
	for _, s := range samples {
		v := s.target[state]
		if client {
			v = s.client[state]
		}
		m = max(m, v)
	}
	return m
}

func TestStorm(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		const n = 2000
		for _, tc := range []struct {
			name   string
			scen   Scenario
			closer Closer
			// drainSide: which side records the drain phase.
			drainOnTarget bool
			// states that must show up during the storm, per side.
			clientState, targetState string
		}{
			{"client", ClientHalfClose, CloserClient, false, "ESTABLISHED", "ESTABLISHED"},
			{"server", ServerHalfClose, CloserServer, true, "ESTABLISHED", "ESTABLISHED"},
			{"both", Simultaneous, CloserBoth, false, "ESTABLISHED", "ESTABLISHED"},
			{"close-wait-leak", CloseWaitLeak, CloserClient, false, "FIN_WAIT2", "CLOSE_WAIT"},
			{"close-wait-leak-server", CloseWaitLeak, CloserServer, true, "CLOSE_WAIT", "FIN_WAIT2"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := runStorm(t, n, tc.scen, tc.closer, nil)
				c := r.client
				if c.Attempts != n || c.Opened != n {
					t.Fatalf("client attempts %d opened %d, want %d: errors %v", c.Attempts, c.Opened, n, c.Errors)
				}
				if c.Closed+c.Failed != c.Opened || c.Unaccounted != 0 {
					t.Fatalf("client: opened %d = closed %d + failed %d + unaccounted %d", c.Opened, c.Closed, c.Failed, c.Unaccounted)
				}
				atLeast(t, "client closed (EOF)", c.Closed, n*99/100)
				if c.Held != 0 || c.HoldPeak < n*99/100 {
					t.Errorf("client held %d at the end, peak %d", c.Held, c.HoldPeak)
				}
				tg := r.target
				if tg.Opened != n || tg.Closed+tg.Failed != tg.Opened {
					t.Fatalf("target: accepted %d, closed %d + failed %d", tg.Opened, tg.Closed, tg.Failed)
				}
				if c.LastGone.IsZero() {
					t.Error("no last close time")
				}
				h := r.sink.Totals()[0]
				if got := h[collector.PhaseConnect].TotalCount(); got != n {
					t.Errorf("connect recorded %d times, want %d", got, n)
				}
				if got := h[collector.PhaseTotal].TotalCount(); got != int64(c.Closed) {
					t.Errorf("total recorded %d times, want %d", got, c.Closed)
				}
				drains := h[collector.PhaseDrain].TotalCount()
				want := int64(c.Closed)
				if tc.drainOnTarget {
					want = int64(tg.Closed)
				}
				if drains != want {
					t.Errorf("drain recorded %d times, want %d", drains, want)
				}
				if got := peak(r.during, true, tc.clientState); got < n/2 {
					t.Errorf("client %s peak %d during the storm, want at least %d", tc.clientState, got, n/2)
				}
				if got := peak(r.during, false, tc.targetState); got < n/2 {
					t.Errorf("target %s peak %d during the storm, want at least %d", tc.targetState, got, n/2)
				}
				// After the storm nothing is held: what is left is
				// TIME_WAIT on the side that closed first.
				end := readSides(t, r.port)
				if left := end.client["ESTABLISHED"] + end.target["ESTABLISHED"] + end.client["CLOSE_WAIT"] + end.target["CLOSE_WAIT"]; left != 0 {
					t.Errorf("%d sockets still established or in CLOSE_WAIT after the storm: %+v", left, end)
				}
			})
		}
	})
}

func TestStormPacedAndInterrupted(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		t.Run("rate", func(t *testing.T) {
			start := time.Now()
			r := runStorm(t, 500, ClientHalfClose, CloserClient, func(c *StormConfig) {
				c.Rate, c.Hold, c.Window = 2500, 50*time.Millisecond, 0
			})
			if el := time.Since(start); el < 190*time.Millisecond {
				t.Errorf("500 connections at 2500/s took %v", el)
			}
			if r.client.Closed != 500 {
				t.Errorf("closed %d of 500: %+v", r.client.Closed, r.client)
			}
		})
		t.Run("interrupted", func(t *testing.T) {
			fds := openFDs(t)
			sink := collector.NewLatencySink(1)
			target, err := StartStormTarget(StormTargetConfig{
				Listen: netip.MustParseAddrPort("127.0.0.1:0"), Scenario: ClientHalfClose,
			}, sink)
			if err != nil {
				t.Fatal(err)
			}
			defer target.Close()
			st, err := NewStorm(StormConfig{N: 300, Target: target.Addr(), Scenario: ClientHalfClose, Hold: time.Minute}, sink)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- st.Run(ctx) }()
			for i := 0; i < 200 && st.Held() < 300; i++ {
				time.Sleep(10 * time.Millisecond)
			}
			cancel()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("storm did not stop")
			}
			c := st.Counts()
			// Held before their FIN when the stop came: unfinished, not
			// errors, and the identity holds.
			if c.Opened != 300 || c.Failed != 0 || c.Unfinished[StopHeld] != 300 || c.Unaccounted != 0 ||
				c.Attempts != c.Closed+c.ErrorTotal()+c.UnfinishedTotal() {
				t.Errorf("interrupted storm: %+v", c)
			}
			target.Close()
			if left := openFDs(t) - fds; left > 0 {
				t.Errorf("%d descriptors left open after the interrupted storm", left)
			}
		})
		// Stopped after its FINs, while the target leaks CLOSE_WAIT: the
		// client's connections are unfinished in drain.
		t.Run("interrupted-in-drain", func(t *testing.T) {
			sink := collector.NewLatencySink(1)
			target, err := StartStormTarget(StormTargetConfig{
				Listen: netip.MustParseAddrPort("127.0.0.1:0"), Scenario: CloseWaitLeak, Hold: time.Minute,
			}, sink)
			if err != nil {
				t.Fatal(err)
			}
			defer target.Close()
			st, err := NewStorm(StormConfig{N: 100, Target: target.Addr(), Scenario: CloseWaitLeak, Hold: 0}, sink)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- st.Run(ctx) }()
			for i := 0; i < 500 && readSides(t, target.Addr().Port()).target["CLOSE_WAIT"] < 100; i++ {
				time.Sleep(10 * time.Millisecond)
			}
			cancel()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("storm did not stop")
			}
			c := st.Counts()
			if c.Unfinished[StopDrain] != 100 || c.Unaccounted != 0 || c.Attempts != c.Closed+c.ErrorTotal()+c.UnfinishedTotal() {
				t.Errorf("storm stopped in drain: %+v", c)
			}
		})
		t.Run("refused", func(t *testing.T) {
			st, err := NewStorm(StormConfig{N: 50, Target: netip.MustParseAddrPort("127.0.0.1:1"), Scenario: ClientHalfClose}, collector.NewLatencySink(1))
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			c := st.Counts()
			if c.Attempts != 50 || c.Opened != 0 || c.Errors[ErrRefused] != 50 {
				t.Errorf("refused storm: %+v", c)
			}
		})
	})
}
