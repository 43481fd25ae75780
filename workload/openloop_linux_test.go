package workload

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/internal/nstest"
)

// TestOpenLoopRate checks that an open loop starts connections at the asked
// rate, for both arrival processes, and stops at --cycles exactly.
func TestOpenLoopRate(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		for _, arrival := range []Arrival{ArrivalConstant, ArrivalPoisson} {
			t.Run(arrival.String(), func(t *testing.T) {
				target, err := StartTarget(TargetConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"),
					Scenarios: []Scenario{ClientHalfClose}, Acceptors: 4, ResponseSize: 16, Timeout: 5 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				defer target.Close()
				pool, err := NewPool(Config{Mix: NewMix(ClientHalfClose), Targets: target.Addrs(), Conns: 8,
					Rate: 2000, Arrival: arrival, Cycles: 3000, Duration: 20 * time.Second, RequestSize: 16,
					ResponseSize: 16, Timeout: 5 * time.Second, Seed: 1}, collector.NewLatencySink(1))
				if err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				if err := pool.Run(context.Background()); err != nil {
					t.Fatal(err)
				}
				el := time.Since(start).Seconds()
				c := pool.Counts(0)
				if c.Attempts != 3000 || c.Cycles != 3000 {
					t.Fatalf("attempts %d cycles %d errors %v, want 3000", c.Attempts, c.Cycles, c.Errors)
				}
				// 3000 at 2000/s takes 1.5 s; Poisson varies by a few percent.
				if rate := 3000 / el; rate < 1600 || rate > 2200 {
					t.Fatalf("achieved %.0f/s for 2000/s asked (%.2fs)", rate, el)
				}
			})
		}
	})
}

// TestOpenLoopCoordinatedOmission drives a server that takes 20 ms to answer
// at a rate one worker cannot keep: the late starts must be counted, and the
// total latency must include the time each connection waited for its turn
// (measured from its intended start), not just the 20 ms of service.
func TestOpenLoopCoordinatedOmission(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					io.Copy(io.Discard, c)
					time.Sleep(20 * time.Millisecond)
					c.Write([]byte("response"))
				}()
			}
		}()
		target := netip.MustParseAddrPort(ln.Addr().String())
		sink := collector.NewLatencySink(1)
		pool, err := NewPool(Config{Mix: NewMix(ClientHalfClose), Targets: []netip.AddrPort{target}, Conns: 1,
			Rate: 200, Cycles: 60, Duration: 20 * time.Second, RequestSize: 16, Timeout: 5 * time.Second}, sink)
		if err != nil {
			t.Fatal(err)
		}
		if err := pool.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		c := pool.Counts(0)
		if c.Cycles != 60 {
			t.Fatalf("cycles %d errors %v", c.Cycles, c.Errors)
		}
		if c.LateStarts < 45 {
			t.Errorf("late starts %d of 60, want most: one worker serves 50/s, 200/s were asked", c.LateStarts)
		}
		h := sink.Totals()[0]
		drain := h[collector.PhaseDrain].ValueAtQuantile(50)
		total := h[collector.PhaseTotal].ValueAtQuantile(99)
		// Service takes about 20 ms; the 60th connection was intended at
		// 300 ms and started near 1.2 s, so its total is near 900 ms.
		if drain < int64(15*time.Millisecond) || drain > int64(200*time.Millisecond) {
			t.Errorf("drain p50 %v, want about 20ms", time.Duration(drain))
		}
		if total < int64(500*time.Millisecond) {
			t.Errorf("total p99 %v: latency is not counted from the intended start", time.Duration(total))
		}
	})
}

// TestTimeout checks --timeout against a target that accepts and never
// answers: every connection ends as a timeout, about when it is due.
func TestTimeout(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		var held []net.Conn
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				held = append(held, c) // never read, never answer
			}
		}()
		pool, err := NewPool(Config{Mix: NewMix(ClientHalfClose), Targets: []netip.AddrPort{netip.MustParseAddrPort(ln.Addr().String())},
			Conns: 2, Cycles: 4, Duration: 20 * time.Second, RequestSize: 16, Timeout: 300 * time.Millisecond}, collector.NewLatencySink(1))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := pool.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		el := time.Since(start)
		c := pool.Counts(0)
		if c.Errors[ErrTimeout] != 4 || c.Cycles != 0 || c.EOF != 0 {
			t.Fatalf("timeouts %d cycles %d eof %d, want 4, 0, 0 (errors %v)", c.Errors[ErrTimeout], c.Cycles, c.EOF, c.Errors)
		}
		// Two rounds of 300 ms each, plus the watchdog's tick.
		if el < 600*time.Millisecond || el > 5*time.Second {
			t.Fatalf("4 timeouts of 300ms on 2 workers took %v", el)
		}
	})
}
