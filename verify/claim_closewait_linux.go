package verify

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

var claimCloseWaitLeak = Claim{
	Name:      "close-wait-leak",
	Statement: "A server that never closes after reading EOF accumulates CLOSE_WAIT; what does and does not clear it (keepalive, the client's close, the server's exit).",
	Source:    "seed article §4.3 (CLOSE_WAIT 泛滥; tcp_keepalive_time … 及时发现断连)",
	Run:       runCloseWaitLeak,
}

// closeWaitGroup is one way the client side behaves, served by one port of
// the leaky server.
type closeWaitGroup struct {
	name        string
	port        int
	keepalive   bool
	clientClose bool
	clients     []*net.TCPConn
	clearedAt   float64 // seconds after the half-close when its CLOSE_WAIT reached 0; -1 never
}

const closeWaitConns = 5

// runCloseWaitLeak starts a leaky server process (hold-server) and half-
// closes five connections to each of four ports: with and without server
// keepalive (1 s), with the client keeping its descriptor or closing it
// (tcp_fin_timeout=2 then reaps the client's orphan). It watches CLOSE_WAIT
// for 6 s, then lets the server process exit.
func runCloseWaitLeak(ctx context.Context, env *Env) Result {
	var r Result
	if env.Helper == nil {
		return failed(r, errors.New("no helper process available to play the leaky server"))
	}
	if err := env.Set(fmt.Sprintf("net.ipv4.tcp_fin_timeout=%d", finTimeout)); err != nil {
		return failed(r, err)
	}
	groups := []*closeWaitGroup{
		{name: "no keepalive, client keeps its half-closed descriptor", port: 5201},
		{name: "no keepalive, client closes (its FIN_WAIT2 orphan is reaped after 2 s)", port: 5202, clientClose: true},
		{name: "server keepalive 1 s, client keeps its descriptor", port: 5203, keepalive: true},
		{name: "server keepalive 1 s, client closes", port: 5204, keepalive: true, clientClose: true},
	}
	var args []string
	for _, g := range groups {
		mode := "noka"
		if g.keepalive {
			mode = "ka"
		}
		args = append(args, fmt.Sprintf("127.0.0.1:%d/%s", g.port, mode))
		g.clearedAt = -1
	}
	hctx, hcancel := context.WithCancel(ctx)
	defer hcancel()
	cmd := env.Helper(hctx, "hold-server", args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return failed(r, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return failed(r, err)
	}
	if err := cmd.Start(); err != nil {
		return failed(r, fmt.Errorf("start the leaky server: %w", err))
	}
	exited := make(chan error, 1)
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	reaped := false
	defer func() {
		if reaped {
			return
		}
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(3 * time.Second):
			hcancel() // kills it; the reader goroutine then reaps it
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
			}
		}
	}()
	expect := func(prefix string, n int, d time.Duration) error {
		timeout := time.After(d)
		for n > 0 {
			select {
			case l, ok := <-lines:
				if !ok {
					return fmt.Errorf("the leaky server ended early")
				}
				if strings.HasPrefix(l, prefix) {
					n--
				}
			case <-timeout:
				return fmt.Errorf("the leaky server did not say %q in %v", prefix, d)
			}
		}
		return nil
	}
	if err := expect("ready", 1, 5*time.Second); err != nil {
		return failed(r, err)
	}
	defer func() {
		for _, g := range groups {
			closeAll(g.clients)
		}
	}()
	for _, g := range groups {
		for i := 0; i < closeWaitConns; i++ {
			c, err := dial(ctx, fmt.Sprintf("127.0.0.1:%d", g.port))
			if err != nil {
				return failed(r, err)
			}
			g.clients = append(g.clients, c)
			_ = c.CloseWrite()
		}
	}
	if err := expect("eof", len(groups)*closeWaitConns, 5*time.Second); err != nil {
		return failed(r, err)
	}
	t0 := time.Now()
	for _, g := range groups {
		if g.clientClose {
			closeAll(g.clients)
			g.clients = nil
		}
	}
	server := func(g *closeWaitGroup) side { return serverSide(uint16(g.port)) }
	anyServer := func(s Socket) bool {
		for _, g := range groups {
			if server(g)(s) {
				return true
			}
		}
		return false
	}
	time.Sleep(200 * time.Millisecond)
	all, allText := env.statesOr(anyServer)
	c0, err := env.takeCounters()
	if err != nil {
		return failed(r, err)
	}
	// Watch for 6 s: three keepalive probes' worth after the orphans go.
	const watch = 6 * time.Second
	for time.Since(t0) < watch && ctx.Err() == nil {
		for _, g := range groups {
			m, err := env.States(server(g))
			if err == nil && m["CLOSE_WAIT"] == 0 && g.clearedAt < 0 {
				g.clearedAt = time.Since(t0).Seconds()
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	c1, err := env.takeCounters()
	if err != nil {
		return failed(r, err)
	}
	r.add("server read EOF on every connection and never closed", "server side: %s", allText)
	remaining := make([]int, len(groups))
	for i, g := range groups {
		m, srv := env.statesOr(server(g))
		_, cli := env.statesOr(clientSide(uint16(g.port)))
		remaining[i] = m["CLOSE_WAIT"]
		r.add(g.name, "after %.0f s: server side %s; client side %s", watch.Seconds(), srv, cli)
	}
	r.add("counters over the watch", "TCPKeepAlive (probes sent) +%d, Tcp.EstabResets +%d, Tcp.OutRsts +%d",
		delta(c0, c1, "TcpExt.TCPKeepAlive"), delta(c0, c1, "Tcp.EstabResets"), delta(c0, c1, "Tcp.OutRsts"))

	// The server process exits (its standard input ends).
	stdin.Close()
	te := time.Now()
	select {
	case <-exited:
		reaped = true
	case <-time.After(5 * time.Second):
		return failed(r, errors.New("the leaky server did not exit"))
	}
	var exitText string
	var exitCleared bool
	waitUntil(ctx, 2*time.Second, func() bool {
		m, t := env.statesOr(anyServer)
		exitText = t
		exitCleared = m["CLOSE_WAIT"] == 0 && m["LAST_ACK"] == 0
		return exitCleared
	})
	clearedIn := time.Since(te).Seconds()
	keptClients := func(s Socket) bool {
		return s.Remote.Port() == uint16(groups[0].port) || s.Remote.Port() == uint16(groups[2].port)
	}
	_, cliText := env.statesOr(keptClients)
	r.add("server process exits", "server side after %.2f s: %s; clients that kept descriptors: %s", clearedIn, exitText, cliText)

	g4 := groups[3]
	accumulated := all["CLOSE_WAIT"] == len(groups)*closeWaitConns
	mech := []string{}
	verb := func(cleared bool) string {
		if cleared {
			return "cleared it"
		}
		return "did not clear it"
	}
	mech = append(mech, fmt.Sprintf("the client's close %s", verb(remaining[1] == 0)))
	mech = append(mech, fmt.Sprintf("keepalive to a live client %s", verb(remaining[2] == 0)))
	ka := fmt.Sprintf("keepalive once the client's socket was gone %s", verb(remaining[3] == 0))
	if g4.clearedAt >= 0 {
		ka += fmt.Sprintf(" (the probe was answered by RST; gone %.1f s after the half-close)", g4.clearedAt)
	}
	mech = append(mech, ka)
	mech = append(mech, fmt.Sprintf("the server's exit %s (%.2f s)", verb(exitCleared), clearedIn))
	switch {
	case accumulated && remaining[0] == closeWaitConns:
		r.Verdict = Holds
		r.Finding = fmt.Sprintf("%d CLOSE_WAIT piled up and the untouched ones stayed %.0f s; %s", all["CLOSE_WAIT"], watch.Seconds(), strings.Join(mech, "; "))
	case all["CLOSE_WAIT"] == 0:
		r.Verdict = DoesNotHold
		r.Finding = "no CLOSE_WAIT appeared on the server side"
	default:
		r.Verdict = Inconclusive
		r.Finding = fmt.Sprintf("CLOSE_WAIT at start %d of %d, left in the plain group %d of %d", all["CLOSE_WAIT"], len(groups)*closeWaitConns, remaining[0], closeWaitConns)
	}
	return r
}
