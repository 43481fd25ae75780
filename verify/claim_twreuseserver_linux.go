package verify

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"
)

var claimTWReuseServer = Claim{
	Name:      "tw-reuse-server",
	Statement: "tcp_tw_reuse lets a server's TIME_WAIT sockets be reused for new incoming connections, improving port use.",
	Source:    "seed article §4.3 (tcp_tw_reuse:允许 TIME_WAIT 套接字被重用于新连接,提升端口利用率), applied to a server that closes first",
	Run:       runTWReuseServer,
}

const (
	twsPorts = 10 // the client's ip_local_port_range
	twsConns = 30 // three connections per client port
)

// twsOutcome is what one tcp_tw_reuse value measured.
type twsOutcome struct {
	ok, busy        int     // connections completed / connects that got EADDRNOTAVAIL
	other           string  // another error, if any
	slowest         float64 // longest connect, seconds (a refused SYN would cost a 1 s retransmit)
	ports           int     // distinct client ports used
	serverTW        int     // server-side TIME_WAIT at the end
	clientTW        int     // client-side TIME_WAIT at the end
	recycled        int64   // TcpExt.TWRecycled
	rsts, synRetran int64
}

func (o twsOutcome) String() string {
	s := fmt.Sprintf("%d of %d connections completed over %d client ports (%d EADDRNOTAVAIL), slowest connect %.1f ms; TIME_WAIT at the end: server side %d, client side %d; TWRecycled +%d, Tcp.OutRsts +%d, TCPSynRetrans +%d",
		o.ok, twsConns, o.ports, o.busy, o.slowest*1000, o.serverTW, o.clientTW, o.recycled, o.rsts, o.synRetran)
	if o.other != "" {
		s += "; other error: " + o.other
	}
	return s
}

// runTWReuseServer: the client may use only ten ports; thirty times it
// connects, the server writes a reply and closes first (so TIME_WAIT is the
// server's), the client reads to EOF and closes. From the eleventh
// connection on every SYN carries a 4-tuple that the server holds in
// TIME_WAIT. Once with tcp_tw_reuse=0, once with 1.
func runTWReuseServer(ctx context.Context, env *Env) Result {
	var r Result
	var outs []twsOutcome
	for i, reuse := range []int{0, 1} {
		o, err := twsRun(ctx, env, i, reuse)
		if err != nil {
			return failed(r, fmt.Errorf("tcp_tw_reuse=%d: %w", reuse, err))
		}
		outs = append(outs, o)
		r.add(fmt.Sprintf("tcp_tw_reuse=%d, server closes first", reuse), "%s", o)
		r.figure(fmt.Sprintf("completed_reuse_%d", reuse), float64(o.ok))
		r.figure(fmt.Sprintf("server_timewait_reuse_%d", reuse), float64(o.serverTW))
		r.figure(fmt.Sprintf("twrecycled_reuse_%d", reuse), float64(o.recycled))
		r.figure(fmt.Sprintf("client_ports_reuse_%d", reuse), float64(o.ports))
	}
	off, on := outs[0], outs[1]
	switch {
	case off.ports == 0 || off.ports > twsPorts || off.serverTW != off.ports || twsConns < 2*off.ports:
		r.Verdict = Inconclusive
		r.Finding = fmt.Sprintf("the server held %d TIME_WAIT sockets over %d client ports; the experiment needs one per port, and several connections per port", off.serverTW, off.ports)
	case off.ok == twsConns && on.ok == twsConns && off.recycled == 0 && on.recycled == 0:
		r.Verdict = DoesNotHold
		r.Finding = fmt.Sprintf("tcp_tw_reuse changed nothing for incoming connections: with 0 and with 1 all %d connections from %d client ports (of a 10-port range) completed (slowest connect %.1f / %.1f ms), each new SYN taking over the server's TIME_WAIT of its 4-tuple (the server never held more TIME_WAIT than there were client ports) (the kernel accepts a SYN in TIME_WAIT whose sequence or timestamp is newer), TWRecycled +0 both times; the setting acts only on a host's own outgoing connect()",
			twsConns, off.ports, off.slowest*1000, on.slowest*1000)
	case on.ok > off.ok:
		r.Verdict = Holds
		r.Finding = fmt.Sprintf("with tcp_tw_reuse=1 %d connections completed, with 0 only %d", on.ok, off.ok)
	default:
		r.Verdict = Inconclusive
		r.Finding = fmt.Sprintf("reuse 0: %d completed, reuse 1: %d completed of %d", off.ok, on.ok, twsConns)
	}
	return r
}

// twsRun measures one tcp_tw_reuse value; i picks its ports.
func twsRun(ctx context.Context, env *Env, i, reuse int) (twsOutcome, error) {
	var o twsOutcome
	lo := 41000 + 20*i
	if err := env.Set(fmt.Sprintf("net.ipv4.ip_local_port_range=%d %d", lo, lo+twsPorts-1),
		fmt.Sprintf("net.ipv4.tcp_tw_reuse=%d", reuse), "net.ipv4.tcp_timestamps=1"); err != nil {
		return o, err
	}
	ln, err := listen(5300 + i)
	if err != nil {
		return o, err
	}
	defer ln.Close()
	sport := portOf(ln.Addr())
	before, err := env.takeCounters()
	if err != nil {
		return o, err
	}
	used := map[uint16]bool{}
	reply := make([]byte, 100)
	for k := 0; k < twsConns && ctx.Err() == nil; k++ {
		t0 := time.Now()
		c, s, err := pair(ctx, ln)
		if errors.Is(err, syscall.EADDRNOTAVAIL) {
			o.busy++
			continue
		}
		if err != nil {
			o.other = errName(err)
			continue
		}
		o.slowest = max(o.slowest, time.Since(t0).Seconds())
		used[portOf(c.LocalAddr())] = true
		_, _ = s.Write(reply)
		s.Close() // the server closes first: TIME_WAIT is the server's
		n, _ := readAll(c, 2*time.Second)
		c.Close()
		if n == int64(len(reply)) {
			o.ok++
		}
		// The client's port is free once its LAST_ACK is answered.
		waitUntil(ctx, time.Second, func() bool {
			m, err := env.States(clientSide(sport))
			return err == nil && m["LAST_ACK"] == 0
		})
	}
	after, err := env.takeCounters()
	if err != nil {
		return o, err
	}
	m, _ := env.statesOr(serverSide(sport))
	o.serverTW = m["TIME_WAIT"]
	mc, _ := env.statesOr(clientSide(sport))
	o.clientTW = mc["TIME_WAIT"]
	o.ports = len(used)
	o.recycled = delta(before, after, "TcpExt.TWRecycled")
	o.rsts = delta(before, after, "Tcp.OutRsts")
	o.synRetran = delta(before, after, "TcpExt.TCPSynRetrans")
	return o, nil
}
