package verify

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/closeload/closeload/internal/ctxtime"
)

var claimFinTimeoutCloseWait = Claim{
	Name:      "fin-timeout-closewait",
	Statement: "Lowering tcp_fin_timeout helps clear piles of CLOSE_WAIT.",
	Source:    "seed article §4.3 (CLOSE_WAIT 泛滥 … net.ipv4.tcp_fin_timeout = 30)",
	Run:       runFinTimeoutCloseWait,
}

const (
	fcwConns = 5
	fcwWatch = 3 * time.Second
)

// fcwGroup is one tcp_fin_timeout value with the connections made under it.
type fcwGroup struct {
	value   int
	ln      *net.TCPListener
	servers []*net.TCPConn
	clients map[uint16]bool
}

// runFinTimeoutCloseWait: under tcp_fin_timeout 1, 60 and 120, five clients
// each close (Close, so their FIN_WAIT_2 is orphaned) against a server that
// reads EOF and never closes. The server's CLOSE_WAIT sockets and the
// clients' orphans are watched for 3 s.
func runFinTimeoutCloseWait(ctx context.Context, env *Env) Result {
	var r Result
	groups := []*fcwGroup{{value: 1}, {value: 60}, {value: 120}}
	defer func() {
		for _, g := range groups {
			closeAll(g.servers)
			if g.ln != nil {
				g.ln.Close()
			}
		}
	}()
	for _, g := range groups {
		if err := env.Set(fmt.Sprintf("net.ipv4.tcp_fin_timeout=%d", g.value)); err != nil {
			return failed(r, err)
		}
		ln, err := listen(0)
		if err != nil {
			return failed(r, err)
		}
		g.ln = ln
		clients, servers, err := pairs(ctx, ln, fcwConns)
		if err != nil {
			return failed(r, err)
		}
		g.servers, g.clients = servers, portsOf(clients)
		closeAll(clients)
		for _, s := range servers {
			if _, err := readAll(s, 2*time.Second); err != nil {
				return failed(r, fmt.Errorf("server read to EOF: %w", err))
			}
		}
		// The setting is read when each orphan's timer starts: wait for the
		// clients' FIN_WAIT2 before the next group changes it.
		if !waitUntil(ctx, 2*time.Second, func() bool {
			m, err := env.States(localPorts(g.clients))
			return err == nil && m["FIN_WAIT2"] == fcwConns
		}) {
			_, st := env.statesOr(localPorts(g.clients))
			return failed(r, fmt.Errorf("tcp_fin_timeout=%d: the clients did not reach FIN_WAIT2: %s", g.value, st))
		}
	}
	t0 := time.Now()
	socks, err := env.Sockets()
	if err != nil {
		return failed(r, err)
	}
	startCW := make([]int, len(groups))
	for i, g := range groups {
		_, st, _, _ := timerSummary(socks, serverSide(portOf(g.ln.Addr())))
		startCW[i] = st["CLOSE_WAIT"]
	}
	if err := ctxtime.Sleep(ctx, fcwWatch); err != nil {
		return failed(r, err)
	}
	socks, err = env.Sockets()
	if err != nil {
		return failed(r, err)
	}
	watched := time.Since(t0).Seconds()
	var endCW []int
	var cleared []string
	shortOrphans := -1
	for i, g := range groups {
		_, srv, _, kinds := timerSummary(socks, serverSide(portOf(g.ln.Addr())))
		nc, cli, _, _ := timerSummary(socks, localPorts(g.clients))
		endCW = append(endCW, srv["CLOSE_WAIT"])
		if g.value == 1 {
			shortOrphans = nc
		}
		if srv["CLOSE_WAIT"] < startCW[i] {
			cleared = append(cleared, fmt.Sprintf("tcp_fin_timeout=%d", g.value))
		}
		r.add(fmt.Sprintf("tcp_fin_timeout=%d", g.value), "server CLOSE_WAIT %d at start, %d after %.1f s (%s); client side then: %s",
			startCW[i], srv["CLOSE_WAIT"], watched, timerText(kinds, -1), orNone(fmtStates(cli), nc))
		r.figure(fmt.Sprintf("closewait_end_fin_timeout_%d", g.value), float64(srv["CLOSE_WAIT"]))
	}
	r.figure("client_orphans_end_fin_timeout_1", float64(shortOrphans))
	all := func(v []int) bool {
		for _, x := range v {
			if x != fcwConns {
				return false
			}
		}
		return true
	}
	switch {
	case !all(startCW):
		r.Verdict = Inconclusive
		r.Finding = fmt.Sprintf("CLOSE_WAIT at start %v, want %d in each group", startCW, fcwConns)
	case all(endCW) && shortOrphans == 0:
		r.Verdict = DoesNotHold
		r.Finding = fmt.Sprintf("tcp_fin_timeout cleared no CLOSE_WAIT: with 1, 60 and 120 s all %d stayed for %.1f s with no timer running, while the peers' orphaned FIN_WAIT_2 under 1 s was gone; only the server's close (or its exit, or keepalive to a vanished peer) ends CLOSE_WAIT",
			len(groups)*fcwConns, watched)
	case len(cleared) > 0:
		r.Verdict = Holds
		r.Finding = fmt.Sprintf("CLOSE_WAIT cleared under %s", strings.Join(cleared, ", "))
	default:
		r.Verdict = Inconclusive
		r.Finding = fmt.Sprintf("CLOSE_WAIT at the end %v; client orphans under 1 s left %d", endCW, shortOrphans)
	}
	return r
}

// orNone says "gone" for a selection that no longer has a socket.
func orNone(states string, n int) string {
	if n == 0 {
		return "gone"
	}
	return states
}
