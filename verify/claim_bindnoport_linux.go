package verify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

var claimBindNoPort = Claim{
	Name:      "bind-no-port",
	Statement: "Spreading a client over several source addresses avoids port exhaustion only when the bind leaves the port to connect() (IP_BIND_ADDRESS_NO_PORT).",
	Source:    "closeload's own dialer design; folklore",
	Heavy:     true,
	Run:       runBindNoPort,
}

const (
	spreadSources = 8
	spreadPorts   = 64
	spreadWindow  = 3 * time.Second
	spreadWorkers = 2
)

// spreadVariant is one way of binding the eight sources.
type spreadVariant struct {
	name    string
	noPort  bool
	sysctls []string
}

// spreadOutcome is what one variant measured.
type spreadOutcome struct {
	ok, notAvail, inUse, other int64
	rate, lastRate             float64
	recycled                   int64
	example                    string
}

func (o spreadOutcome) String() string {
	s := fmt.Sprintf("%.0f connections/s over %.0f s (%.0f/s in the last second); %d connected, EADDRNOTAVAIL %d, EADDRINUSE %d; TWRecycled +%d",
		o.rate, spreadWindow.Seconds(), o.lastRate, o.ok, o.notAvail, o.inUse, o.recycled)
	if o.other > 0 {
		s += fmt.Sprintf("; other errors %d (%s)", o.other, o.example)
	}
	return s
}

// runBindNoPort: with ip_local_port_range cut to 64 ports, two workers
// connect-and-close (client first, so TIME_WAIT is the client's) from eight
// source addresses for 3 s, binding each source with and without
// IP_BIND_ADDRESS_NO_PORT, and once more with it but tcp_tw_reuse=0. Each
// variant has its own sources, port range and destination port.
func runBindNoPort(ctx context.Context, env *Env) Result {
	var r Result
	variants := []spreadVariant{
		{"8 sources, bind with IP_BIND_ADDRESS_NO_PORT", true, nil},
		{"8 sources, bind without IP_BIND_ADDRESS_NO_PORT", false, nil},
		{"8 sources, IP_BIND_ADDRESS_NO_PORT, tcp_tw_reuse=0", true, []string{"net.ipv4.tcp_tw_reuse=0"}},
	}
	reuse, _ := env.Get("net.ipv4.tcp_tw_reuse")
	out := make([]spreadOutcome, len(variants))
	for i, v := range variants {
		o, err := spreadRun(ctx, env, i, v)
		if err != nil {
			return failed(r, fmt.Errorf("%s: %w", v.name, err))
		}
		out[i] = o
		r.add(v.name, "%s", o)
	}
	with, without, noReuse := out[0], out[1], out[2]
	ratio := with.rate / max(without.rate, 1)
	r.add("setting", "ip_local_port_range of %d ports, one destination, tcp_tw_reuse=%s unless stated, the client closes first", spreadPorts, reuse)
	r.add("rate ratio with/without IP_BIND_ADDRESS_NO_PORT", "%.1f× (last second: %.0f/s against %.0f/s)", ratio, with.lastRate, without.lastRate)
	exhausted := func(o spreadOutcome) bool { return o.lastRate <= 0.1*with.lastRate }
	switch {
	case ratio >= 2 && exhausted(without) && exhausted(noReuse):
		r.Verdict = HoldsOnlyWhen
		r.Condition = "connect() may also take ports from TIME_WAIT (tcp_tw_reuse 1, or 2 on loopback)"
		r.Finding = fmt.Sprintf("with IP_BIND_ADDRESS_NO_PORT the 8 sources kept %.0f/s; bound without it they exhausted their ports (%.0f/s overall, %.0f/s at the end, %.1f× less); with tcp_tw_reuse=0 the NO_PORT client exhausted as well (%.0f/s at the end)",
			with.lastRate, without.rate, without.lastRate, ratio, noReuse.lastRate)
	case ratio >= 2 && exhausted(without):
		r.Verdict = Holds
		r.Finding = fmt.Sprintf("with IP_BIND_ADDRESS_NO_PORT %.0f/s; without it %.0f/s (%.1f× less), its ports exhausted", with.rate, without.rate, ratio)
	case ratio < 1.5:
		r.Verdict = DoesNotHold
		r.Finding = fmt.Sprintf("binding with or without IP_BIND_ADDRESS_NO_PORT made no difference: %.0f/s against %.0f/s", with.rate, without.rate)
	default:
		r.Verdict = Inconclusive
		r.Finding = fmt.Sprintf("%.0f/s with, %.0f/s without (%.1f×)", with.rate, without.rate, ratio)
	}
	return r
}

// spreadRun measures one variant; i picks its sources and ports.
func spreadRun(ctx context.Context, env *Env, i int, v spreadVariant) (spreadOutcome, error) {
	var o spreadOutcome
	lo := 40000 + 100*i
	specs := append([]string{fmt.Sprintf("net.ipv4.ip_local_port_range=%d %d", lo, lo+spreadPorts-1)}, v.sysctls...)
	if err := env.Set(specs...); err != nil {
		return o, err
	}
	ln, err := listen(5300 + i)
	if err != nil {
		return o, err
	}
	stop := serveEOFClose(ln)
	defer stop()
	addr := ln.Addr().String()
	sources := make([]*net.TCPAddr, spreadSources)
	for k := range sources {
		sources[k] = net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, byte(1 + i), byte(1 + k)}), 0))
	}
	noPort := func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}
	before, err := env.takeCounters()
	if err != nil {
		return o, err
	}
	var (
		ok, notAvail, inUse, other atomic.Int64
		lastSecond                 atomic.Int64
		example                    atomic.Pointer[string]
		next                       atomic.Int64
		wg                         sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(spreadWindow)
	lastFrom := end.Add(-time.Second)
	for w := 0; w < spreadWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				now := time.Now()
				if now.After(end) {
					return
				}
				d := net.Dialer{KeepAlive: -1, Timeout: time.Second, LocalAddr: sources[next.Add(1)%spreadSources]}
				if v.noPort {
					d.Control = noPort
				}
				c, err := d.DialContext(ctx, "tcp4", addr)
				switch {
				case err == nil:
					c.Close()
					ok.Add(1)
					if now.After(lastFrom) {
						lastSecond.Add(1)
					}
					continue
				case errors.Is(err, syscall.EADDRNOTAVAIL):
					notAvail.Add(1)
				case errors.Is(err, syscall.EADDRINUSE):
					inUse.Add(1)
				default:
					other.Add(1)
					s := errName(err)
					example.Store(&s)
				}
				time.Sleep(2 * time.Millisecond) // a failed connect is cheap: do not spin
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	after, err := env.takeCounters()
	if err != nil {
		return o, err
	}
	o.ok, o.notAvail, o.inUse, o.other = ok.Load(), notAvail.Load(), inUse.Load(), other.Load()
	o.rate = float64(o.ok) / elapsed
	o.lastRate = float64(lastSecond.Load())
	o.recycled = delta(before, after, "TcpExt.TWRecycled")
	if e := example.Load(); e != nil {
		o.example = *e
	}
	return o, nil
}
