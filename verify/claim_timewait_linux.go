package verify

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"
)

var claimTimeWaitCloser = Claim{
	Name:      "timewait-closer",
	Statement: "The side that closes first holds TIME_WAIT; a simultaneous close puts both there.",
	Source:    "TCP state machine (RFC 793; seed article §2.2)",
	Run:       runTimeWaitCloser,
}

const closerConns = 10

// closerMode is one close order.
type closerMode struct {
	name string
	run  func(c, s *net.TCPConn)
}

// closeAfterEOF reads a to EOF, then closes it.
func closeAfterEOF(a *net.TCPConn) {
	_, _ = readAll(a, 3*time.Second)
	a.Close()
}

// simultaneous makes both sides send FIN before either sees the other's.
// Each side first fills the other's receive window without reading, so the
// FIN that CloseWrite queues cannot leave: both sockets are in FIN_WAIT1
// when the peer's FIN finally arrives (the RFC's simultaneous close),
// deterministically rather than by racing two cores.
func simultaneous(c, s *net.TCPConn) {
	var wg sync.WaitGroup
	for _, a := range []*net.TCPConn{c, s} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Small buffers keep the amount parked in the kernel small.
			_ = a.SetReadBuffer(16 << 10)
			_ = a.SetWriteBuffer(16 << 10)
			buf := make([]byte, 64<<10)
			_ = a.SetWriteDeadline(time.Now().Add(150 * time.Millisecond))
			for {
				if _, err := a.Write(buf); err != nil {
					break // the deadline: the window is full
				}
			}
		}()
	}
	wg.Wait()
	_ = c.CloseWrite()
	_ = s.CloseWrite()
	for _, a := range []*net.TCPConn{c, s} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			closeAfterEOF(a)
		}()
	}
	wg.Wait()
}

// runTimeWaitCloser closes ten connections in each order and counts
// TIME_WAIT sockets on each side.
func runTimeWaitCloser(ctx context.Context, env *Env) Result {
	var r Result
	modes := []closerMode{
		{"client closes first", func(c, s *net.TCPConn) {
			c.Close()
			closeAfterEOF(s)
		}},
		{"server closes first", func(c, s *net.TCPConn) {
			s.Close()
			closeAfterEOF(c)
		}},
		{"simultaneous close", simultaneous},
	}
	type count struct{ client, server int }
	got := make([]count, len(modes))
	for i, m := range modes {
		ln, err := listen(0)
		if err != nil {
			return failed(r, err)
		}
		sport := portOf(ln.Addr())
		cs, ss, err := pairs(ctx, ln, closerConns)
		ln.Close()
		if err != nil {
			return failed(r, err)
		}
		var wg sync.WaitGroup
		for k := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m.run(cs[k], ss[k])
			}()
		}
		wg.Wait()
		closeAll(cs)
		closeAll(ss)
		var cli, srv map[string]int
		var cliText, srvText string
		waitUntil(ctx, 2*time.Second, func() bool {
			cli, cliText = env.statesOr(clientSide(sport))
			srv, srvText = env.statesOr(serverSide(sport))
			// settled: nothing but TIME_WAIT left on either side
			return len(cli)+len(srv) == countKeys(cli, "TIME_WAIT")+countKeys(srv, "TIME_WAIT")
		})
		got[i] = count{cli["TIME_WAIT"], srv["TIME_WAIT"]}
		r.add(m.name, "client side: %s; server side: %s", cliText, srvText)
	}
	lo := closerConns * 9 / 10
	cf, sf, sim := got[0], got[1], got[2]
	switch {
	case cf.client >= lo && cf.server == 0 && sf.server >= lo && sf.client == 0 && sim.client >= lo && sim.server >= lo:
		r.Verdict = Holds
		r.Finding = fmt.Sprintf("TIME_WAIT (of %d connections each): client-first %d client / %d server, server-first %d / %d, simultaneous %d / %d",
			closerConns, cf.client, cf.server, sf.client, sf.server, sim.client, sim.server)
	case cf.client >= lo && sf.server >= lo && sim.client+sim.server <= closerConns+1:
		r.Verdict = HoldsOnlyWhen
		r.Condition = "the close is not simultaneous"
		r.Finding = fmt.Sprintf("the first closer held TIME_WAIT, but the simultaneous close left %d client and %d server sockets in it", sim.client, sim.server)
	default:
		r.Verdict = Inconclusive
		r.Finding = fmt.Sprintf("TIME_WAIT client/server: client-first %d/%d, server-first %d/%d, simultaneous %d/%d",
			cf.client, cf.server, sf.client, sf.server, sim.client, sim.server)
	}
	return r
}

// countKeys counts which of key and its orphan sub-count key are present in
// m (0, 1 or 2): with len(m) it tells whether m holds nothing else.
func countKeys(m map[string]int, key string) int {
	n := 0
	for k := range m {
		if k == key || k == key+"/orphan" {
			n++
		}
	}
	return n
}
