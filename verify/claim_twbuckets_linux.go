package verify

import (
	"context"
	"fmt"
	"time"
)

var claimMaxTWBuckets = Claim{
	Name:      "max-tw-buckets",
	Statement: "tcp_max_tw_buckets caps TIME_WAIT: beyond it sockets are destroyed without TIME_WAIT.",
	Source:    "folklore (ip-sysctl documentation)",
	Run:       runMaxTWBuckets,
}

const (
	twCap   = 8
	twConns = 32
)

// runMaxTWBuckets sets tcp_max_tw_buckets to 8 and makes 32 client-first
// closes (the client keeps its descriptor until the server's FIN, so no
// orphan FIN_WAIT2 takes a bucket first); then, with the cap back at its
// default, 32 more as a control.
func runMaxTWBuckets(ctx context.Context, env *Env) Result {
	var r Result
	def, err := env.Get("net.ipv4.tcp_max_tw_buckets")
	if err != nil {
		return failed(r, err)
	}
	if err := env.Set(fmt.Sprintf("net.ipv4.tcp_max_tw_buckets=%d", twCap)); err != nil {
		return failed(r, err)
	}
	type phase struct {
		tw, sockstat int
		overflow     int64
		rsts         int64
		text         string
	}
	run := func() (phase, error) {
		var p phase
		ln, err := listen(0)
		if err != nil {
			return p, err
		}
		defer ln.Close()
		sport := portOf(ln.Addr())
		before, err := env.takeCounters()
		if err != nil {
			return p, err
		}
		for i := 0; i < twConns; i++ {
			c, s, err := pair(ctx, ln)
			if err != nil {
				return p, err
			}
			_ = c.CloseWrite()
			closeAfterEOF(s)
			_, _ = readAll(c, 2*time.Second)
			c.Close()
		}
		time.Sleep(50 * time.Millisecond)
		after, err := env.takeCounters()
		if err != nil {
			return p, err
		}
		m, text := env.statesOr(clientSide(sport))
		p.tw, p.text = m["TIME_WAIT"], text
		p.sockstat = int(after["Sockstat.TCP.tw"])
		p.overflow = delta(before, after, "TcpExt.TCPTimeWaitOverflow")
		p.rsts = delta(before, after, "Tcp.OutRsts")
		return p, nil
	}
	capped, err := run()
	if err != nil {
		return failed(r, err)
	}
	if err := env.Set("net.ipv4.tcp_max_tw_buckets=" + def); err != nil {
		return failed(r, err)
	}
	ctl, err := run()
	if err != nil {
		return failed(r, err)
	}
	r.add(fmt.Sprintf("%d client-first closes, tcp_max_tw_buckets=%d", twConns, twCap),
		"client side: %s; Sockstat tw %d; TCPTimeWaitOverflow +%d; Tcp.OutRsts +%d", capped.text, capped.sockstat, capped.overflow, capped.rsts)
	r.add(fmt.Sprintf("%d more, tcp_max_tw_buckets=%s (default)", twConns, def),
		"client side: %s; Sockstat tw %d; TCPTimeWaitOverflow +%d", ctl.text, ctl.sockstat, ctl.overflow)
	excess := twConns - twCap
	switch {
	case inRange(int64(capped.tw), twCap-1, twCap) && inRange(capped.overflow, excess-1, excess+1) && ctl.tw >= twConns-1 && ctl.overflow == 0:
		r.Verdict = Holds
		r.Finding = fmt.Sprintf("with the cap at %d only %d of %d closes left TIME_WAIT; the other %d were destroyed at once (TCPTimeWaitOverflow +%d, no RST sent: OutRsts +%d); with the default cap all %d did",
			twCap, capped.tw, twConns, twConns-capped.tw, capped.overflow, capped.rsts, ctl.tw)
	case capped.tw >= twConns-1:
		r.Verdict = DoesNotHold
		r.Finding = fmt.Sprintf("%d of %d closes left TIME_WAIT despite tcp_max_tw_buckets=%d", capped.tw, twConns, twCap)
	default:
		r.Verdict = Inconclusive
		r.Finding = fmt.Sprintf("TIME_WAIT %d of %d with cap %d; overflow +%d", capped.tw, twConns, twCap, capped.overflow)
	}
	return r
}
