package verify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

var claimTWReuse = Claim{
	Name:      "tw-reuse",
	Statement: "tcp_tw_reuse lets new outgoing connections reuse ports held in TIME_WAIT (with a tiny ip_local_port_range: reuse 0 against 1; what it needs: tcp_timestamps, tcp_tw_reuse_delay).",
	Source:    "seed article §4.3 (tcp_tw_reuse = 1:允许 TIME_WAIT 套接字被重用于新连接)",
	Run:       runTWReuse,
}

// nonLoopback is an address put on lo (as lo:1) so that tcp_tw_reuse=2 sees
// a connection that is not loopback by its addresses.
var nonLoopback = netip.MustParseAddr("10.200.0.1")

// reuseVariant is one setting of the reuse knobs.
type reuseVariant struct {
	name    string
	sysctls []string
	dst     netip.Addr
	window  time.Duration
}

// reuseOutcome is what one variant measured.
type reuseOutcome struct {
	filled     int           // connections made before the range ran out
	timeWait   int           // of them, in TIME_WAIT when churning began
	ok, busy   int           // connects that succeeded / failed EADDRNOTAVAIL
	first      time.Duration // from the oldest TIME_WAIT's start to the first reuse; -1 if none
	recycled   int64         // TcpExt.TWRecycled delta
	otherError string
	skipped    string
}

func (o reuseOutcome) String() string {
	if o.skipped != "" {
		return "not measured: " + o.skipped
	}
	s := fmt.Sprintf("%d ports filled (%d in TIME_WAIT); then %d connects succeeded, %d got EADDRNOTAVAIL; TWRecycled +%d",
		o.filled, o.timeWait, o.ok, o.busy, o.recycled)
	if o.first >= 0 {
		s += fmt.Sprintf("; first reuse %.2f s after the oldest TIME_WAIT began", o.first.Seconds())
	}
	if o.otherError != "" {
		s += "; other error: " + o.otherError
	}
	return s
}

// runTWReuse fills a 10-port ip_local_port_range with client-side
// TIME_WAIT sockets, then keeps connecting to the same destination for a
// short window, under each setting. Each variant has its own port range and
// destination port, so TIME_WAIT sockets of one never stand in another's way.
func runTWReuse(ctx context.Context, env *Env) Result {
	var r Result
	if !env.Isolated {
		return failed(r, ErrNotIsolated) // the alias would land on the host's lo
	}
	aliasErr := addLoopbackAlias("lo:1", nonLoopback.As4())
	variants := []reuseVariant{
		{"tcp_tw_reuse=0", []string{"net.ipv4.tcp_tw_reuse=0", "net.ipv4.tcp_timestamps=1", "net.ipv4.tcp_tw_reuse_delay=1000"}, loopback, 1600 * time.Millisecond},
		{"tcp_tw_reuse=1", []string{"net.ipv4.tcp_tw_reuse=1", "net.ipv4.tcp_timestamps=1", "net.ipv4.tcp_tw_reuse_delay=1000"}, loopback, 1600 * time.Millisecond},
		{"tcp_tw_reuse=1, tcp_timestamps=0", []string{"net.ipv4.tcp_tw_reuse=1", "net.ipv4.tcp_timestamps=0", "net.ipv4.tcp_tw_reuse_delay=1000"}, loopback, 1600 * time.Millisecond},
		{"tcp_tw_reuse=1, tcp_tw_reuse_delay=100", []string{"net.ipv4.tcp_tw_reuse=1", "net.ipv4.tcp_timestamps=1", "net.ipv4.tcp_tw_reuse_delay=100"}, loopback, 600 * time.Millisecond},
		{"tcp_tw_reuse=2 (default), to 127.0.0.1", []string{"net.ipv4.tcp_tw_reuse=2", "net.ipv4.tcp_timestamps=1", "net.ipv4.tcp_tw_reuse_delay=1000"}, loopback, 1600 * time.Millisecond},
		{"tcp_tw_reuse=2 (default), to 10.200.0.1 on lo", []string{"net.ipv4.tcp_tw_reuse=2", "net.ipv4.tcp_timestamps=1", "net.ipv4.tcp_tw_reuse_delay=1000"}, nonLoopback, 1600 * time.Millisecond},
	}
	out := make([]reuseOutcome, len(variants))
	for i, v := range variants {
		if v.dst == nonLoopback && aliasErr != nil {
			out[i] = reuseOutcome{first: -1, skipped: fmt.Sprintf("cannot add %s to lo: %v", nonLoopback, aliasErr)}
		} else {
			o, err := reuseRun(ctx, env, i, v)
			if err != nil {
				return failed(r, fmt.Errorf("%s: %w", v.name, err))
			}
			out[i] = o
		}
		r.add(v.name, "%s", out[i])
	}
	off, on, noTS, shortDelay, lo2, far2 := out[0], out[1], out[2], out[3], out[4], out[5]
	switch {
	case on.ok == 0:
		r.Verdict = DoesNotHold
		r.Finding = "with tcp_tw_reuse=1 no connect reused a TIME_WAIT port"
	case off.ok == 0 && on.ok > 0 && on.recycled > 0 && off.filled == 10:
		var needs []string
		if lo2.ok > 0 && far2.skipped == "" && far2.ok == 0 {
			needs = append(needs, "tcp_tw_reuse=1 (or 2, the default, only for loopback addresses)")
		} else {
			needs = append(needs, "tcp_tw_reuse=1")
		}
		if noTS.ok == 0 {
			needs = append(needs, "TCP timestamps were negotiated")
		}
		if on.first >= 900*time.Millisecond && shortDelay.ok > 0 && shortDelay.first < on.first {
			needs = append(needs, "the TIME_WAIT socket is older than tcp_tw_reuse_delay")
		}
		r.Verdict = HoldsOnlyWhen
		r.Condition = strings.Join(needs, ", ")
		r.Finding = fmt.Sprintf("with all 10 ports in TIME_WAIT, reuse 0 gave %d of %d connects; reuse 1 gave %d (TWRecycled +%d), the first %.2f s after the oldest TIME_WAIT began (%.2f s with tcp_tw_reuse_delay=100); without timestamps %d",
			off.ok, off.ok+off.busy, on.ok, on.recycled, on.first.Seconds(), shortDelay.first.Seconds(), noTS.ok)
	default:
		r.Verdict = Inconclusive
		r.Finding = fmt.Sprintf("reuse 0: %d connects, reuse 1: %d connects (TWRecycled +%d)", off.ok, on.ok, on.recycled)
	}
	return r
}

// reuseRun measures one variant (index i picks its ports).
func reuseRun(ctx context.Context, env *Env, i int, v reuseVariant) (reuseOutcome, error) {
	o := reuseOutcome{first: -1}
	lo := 40000 + 20*i // even start, odd end: the kernel prefers that parity
	specs := append([]string{fmt.Sprintf("net.ipv4.ip_local_port_range=%d %d", lo, lo+9)}, v.sysctls...)
	if err := env.Set(specs...); err != nil {
		return o, err
	}
	ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(v.dst, uint16(5100+i))))
	if err != nil {
		return o, err
	}
	stop := serveEOFClose(ln)
	defer stop()
	addr := ln.Addr().String()
	sport := portOf(ln.Addr())

	connect := func() error {
		c, err := dial(ctx, addr)
		if err != nil {
			return err
		}
		return c.Close() // the client closes first: TIME_WAIT is ours
	}
	var oldest time.Time // when the first TIME_WAIT began (its close)
	for k := 0; k < 20; k++ {
		err := connect()
		if errors.Is(err, syscall.EADDRNOTAVAIL) {
			break
		}
		if err != nil {
			return o, err
		}
		o.filled++
		if o.filled == 1 {
			oldest = time.Now()
		}
	}
	// Wait until the last server FIN has turned every client socket into
	// TIME_WAIT (an orphan's FIN_WAIT2 is never reused).
	waitUntil(ctx, 2*time.Second, func() bool {
		m, err := env.States(clientSide(sport))
		o.timeWait = m["TIME_WAIT"]
		return err == nil && o.timeWait == o.filled
	})
	began := time.Now()
	before, err := env.takeCounters()
	if err != nil {
		return o, err
	}
	for deadline := began.Add(v.window); time.Now().Before(deadline) && ctx.Err() == nil; {
		err := connect()
		switch {
		case err == nil:
			o.ok++
			if o.first < 0 {
				o.first = time.Since(oldest)
			}
		case errors.Is(err, syscall.EADDRNOTAVAIL):
			o.busy++
			time.Sleep(10 * time.Millisecond)
		default:
			o.otherError = errName(err)
			time.Sleep(10 * time.Millisecond)
		}
	}
	after, err := env.takeCounters()
	if err != nil {
		return o, err
	}
	o.recycled = delta(before, after, "TcpExt.TWRecycled")
	return o, nil
}
