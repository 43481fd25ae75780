package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

var claimUnreadCloseRST = Claim{
	Name:      "unread-close-rst",
	Statement: "Close with unread data in the receive queue sends RST instead of FIN, and the peer can lose data it sent (TCPAbortOnClose; the peer's read sees a reset).",
	Source:    "seed article §1 (避免在未读完时直接 Close(),防止 RST 强制中断)",
	Run:       runUnreadCloseRST,
}

const (
	rstConns    = 10
	rstRequest  = 64 << 10
	rstConsumed = 1 << 10
	rstReply    = 100
)

// endings counts how the clients' reads ended.
type endings struct {
	reply, eof, reset, other int
	example                  string
}

func (e endings) String() string {
	total := e.eof + e.reset + e.other
	s := fmt.Sprintf("%d/%d received the %d-byte reply; reads ended with EOF %d, ECONNRESET %d", e.reply, total, rstReply, e.eof, e.reset)
	if e.other > 0 {
		s += fmt.Sprintf(", other %d (%s)", e.other, e.example)
	}
	return s
}

// readReplies reads each client to its end and classifies how it ended.
func readReplies(cs []*net.TCPConn) endings {
	var e endings
	for _, c := range cs {
		n, err := readUntilErr(c, 3*time.Second)
		if n >= rstReply {
			e.reply++
		}
		switch {
		case errors.Is(err, io.EOF):
			e.eof++
		case errors.Is(err, syscall.ECONNRESET):
			e.reset++
		default:
			e.other++
			e.example = errName(err)
		}
	}
	return e
}

// runUnreadCloseRST: ten clients each send 64 KiB. In the control, the
// server reads everything before replying and closing. In the experiment it
// reads 1 KiB, waits until the rest sits in its receive queue, replies with
// 100 bytes and closes.
func runUnreadCloseRST(ctx context.Context, env *Env) Result {
	var r Result
	req := make([]byte, rstRequest)
	reply := make([]byte, rstReply)

	// Control: everything read before Close.
	ctlLn, err := listen(0)
	if err != nil {
		return failed(r, err)
	}
	defer ctlLn.Close()
	cc, cs, err := pairs(ctx, ctlLn, rstConns)
	if err != nil {
		return failed(r, err)
	}
	defer closeAll(cc)
	c0, err := env.takeCounters()
	if err != nil {
		return failed(r, err)
	}
	var wg sync.WaitGroup
	for i := range cc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = cc[i].SetWriteDeadline(time.Now().Add(5 * time.Second))
			_, _ = cc[i].Write(req)
			_ = cc[i].CloseWrite()
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = readAll(cs[i], 5*time.Second)
			_, _ = cs[i].Write(reply)
			cs[i].Close()
		}()
	}
	wg.Wait()
	ctlEnd := readReplies(cc)
	c1, err := env.takeCounters()
	if err != nil {
		return failed(r, err)
	}

	// Experiment: close with unread data.
	ln, err := listen(0)
	if err != nil {
		return failed(r, err)
	}
	defer ln.Close()
	sport := portOf(ln.Addr())
	traced := kernelResets(uint16(sport))
	clients, servers, err := pairs(ctx, ln, rstConns)
	if err != nil {
		return failed(r, err)
	}
	defer closeAll(clients)
	defer closeAll(servers)
	var writeErrs int
	for _, c := range clients {
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(req); err != nil {
			writeErrs++
		}
	}
	buf := make([]byte, rstConsumed)
	for _, s := range servers {
		_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(s, buf); err != nil {
			return failed(r, fmt.Errorf("server read: %w", err))
		}
	}
	// Wait until the unread rest is in the servers' receive queues.
	var queued uint64
	waitUntil(ctx, 3*time.Second, func() bool {
		socks, err := env.Sockets()
		if err != nil {
			return false
		}
		queued = 0
		for _, s := range socks {
			if serverSide(sport)(s) {
				queued += s.RxQueue
			}
		}
		return queued >= rstConns*(rstRequest-rstConsumed)
	})
	c2, err := env.takeCounters()
	if err != nil {
		return failed(r, err)
	}
	for _, s := range servers {
		_, _ = s.Write(reply)
		s.Close()
	}
	time.Sleep(100 * time.Millisecond)
	c3, err := env.takeCounters()
	if err != nil {
		return failed(r, err)
	}
	end := readReplies(clients)
	_, srvStates := env.statesOr(serverSide(sport))
	_, cliStates := env.statesOr(clientSide(sport))

	abort := delta(c2, c3, "TcpExt.TCPAbortOnClose")
	rsts := delta(c2, c3, "Tcp.OutRsts")
	r.add("control (server reads all, then Close)", "TCPAbortOnClose +%d, Tcp.OutRsts +%d; clients: %s",
		delta(c0, c1, "TcpExt.TCPAbortOnClose"), delta(c0, c1, "Tcp.OutRsts"), ctlEnd)
	r.add("clients' writes", "%d × %d bytes, %d failed", rstConns, rstRequest, writeErrs)
	r.add("server receive queues at Close", "%d bytes unread (%d read by the application of each connection)", queued, rstConsumed)
	r.add("counters over the Close", "TCPAbortOnClose +%d, Tcp.OutRsts +%d, TCPAbortOnData +%d",
		abort, rsts, delta(c2, c3, "TcpExt.TCPAbortOnData"))
	r.add("clients' reads after the Close", "%s", end)
	r.add("states after", "server side: %s; client side: %s", srvStates, cliStates)
	traced(&r)

	lost := int64(queued)
	switch {
	case inRange(abort, rstConns*9/10, rstConns+1) && rsts >= abort && end.reset >= rstConns*9/10 && ctlEnd.eof == rstConns:
		r.Verdict = Holds
		r.Finding = fmt.Sprintf("Close with unread data sent RST (TCPAbortOnClose +%d, no FIN states left); %d bytes the peers had written successfully were discarded unread; %d/%d peers' reads ended in ECONNRESET (%d got the reply first)",
			abort, lost, end.reset, rstConns, end.reply)
	case abort == 0 && end.eof == rstConns:
		r.Verdict = DoesNotHold
		r.Finding = "Close with unread data ended in an orderly FIN: no TCPAbortOnClose, every peer read EOF"
	default:
		r.Verdict = Inconclusive
		r.Finding = fmt.Sprintf("TCPAbortOnClose +%d, OutRsts +%d for %d closes; peers: %s", abort, rsts, rstConns, end)
	}
	return r
}

// inRange reports lo <= v <= hi.
func inRange(v int64, lo, hi int) bool { return v >= int64(lo) && v <= int64(hi) }

var claimLinger0 = Claim{
	Name:      "linger0-fin",
	Statement: "SO_LINGER {on, 0} makes close perform a normal FIN exchange.",
	Source:    "seed article §4.1 (struct linger ling = {1, 0} … 执行正常 FIN 交换)",
	Run:       runLinger0,
}

const lingerConns = 10

// runLinger0: ten connections closed by the client normally (control), then
// ten closed by the client after SetLinger(0), each with nothing unread.
// The server side is blocked in Read in both cases.
func runLinger0(ctx context.Context, env *Env) Result {
	var r Result
	var traced func(*Result)
	phase := func(linger bool) (ends endings, cli, srv string, before, after snapshot, err error) {
		ln, err := listen(0)
		if err != nil {
			return ends, "", "", nil, nil, err
		}
		defer ln.Close()
		sport := portOf(ln.Addr())
		if linger {
			traced = kernelResets(uint16(sport))
		}
		clients, servers, err := pairs(ctx, ln, lingerConns)
		if err != nil {
			return ends, "", "", nil, nil, err
		}
		defer closeAll(servers)
		defer closeAll(clients)
		if before, err = env.takeCounters(); err != nil {
			return ends, "", "", nil, nil, err
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, s := range servers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := readUntilErr(s, 3*time.Second)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case errors.Is(err, io.EOF):
					ends.eof++
					s.Close() // orderly: the server closes after EOF
				case errors.Is(err, syscall.ECONNRESET):
					ends.reset++
				default:
					ends.other++
					ends.example = errName(err)
				}
			}()
		}
		time.Sleep(50 * time.Millisecond) // the readers are blocked in Read
		for _, c := range clients {
			if linger {
				if err := c.SetLinger(0); err != nil {
					return ends, "", "", nil, nil, err
				}
			}
			c.Close()
		}
		wg.Wait()
		time.Sleep(100 * time.Millisecond)
		if after, err = env.takeCounters(); err != nil {
			return ends, "", "", nil, nil, err
		}
		_, cli = env.statesOr(clientSide(sport))
		_, srv = env.statesOr(serverSide(sport))
		return ends, cli, srv, before, after, nil
	}
	ctl, ctlCli, ctlSrv, b0, a0, err := phase(false)
	if err != nil {
		return failed(r, err)
	}
	ends, cli, srv, b1, a1, err := phase(true)
	if err != nil {
		return failed(r, err)
	}
	r.add("control: plain Close", "server reads: EOF %d, ECONNRESET %d; Tcp.OutRsts +%d; client side: %s; server side: %s",
		ctl.eof, ctl.reset, delta(b0, a0, "Tcp.OutRsts"), ctlCli, ctlSrv)
	r.add("SetLinger(0) then Close", "server reads: EOF %d, ECONNRESET %d", ends.eof, ends.reset)
	r.add("counters over the linger-0 closes", "Tcp.OutRsts +%d, TCPAbortOnData +%d, TCPAbortOnLinger +%d, TCPAbortOnClose +%d",
		delta(b1, a1, "Tcp.OutRsts"), delta(b1, a1, "TcpExt.TCPAbortOnData"), delta(b1, a1, "TcpExt.TCPAbortOnLinger"), delta(b1, a1, "TcpExt.TCPAbortOnClose"))
	r.add("states after the linger-0 closes", "client side: %s; server side: %s", cli, srv)
	traced(&r)
	rsts := delta(b1, a1, "Tcp.OutRsts")
	switch {
	case ends.reset >= lingerConns*9/10 && rsts >= int64(lingerConns*9/10) && ctl.eof == lingerConns:
		r.Verdict = DoesNotHold
		r.Finding = fmt.Sprintf("linger {1, 0} sent RST, not FIN: %d/%d peers read ECONNRESET, Tcp.OutRsts +%d, counted as TCPAbortOnData +%d (not TCPAbortOnLinger); no TIME_WAIT or FIN_WAIT anywhere",
			ends.reset, lingerConns, rsts, delta(b1, a1, "TcpExt.TCPAbortOnData"))
	case ends.eof == lingerConns && rsts == 0:
		r.Verdict = Holds
		r.Finding = "every linger-0 close reached the peer as FIN (EOF), no RST sent"
	default:
		r.Verdict = Inconclusive
		r.Finding = fmt.Sprintf("peers read EOF %d, ECONNRESET %d of %d; OutRsts +%d", ends.eof, ends.reset, lingerConns, rsts)
	}
	return r
}
