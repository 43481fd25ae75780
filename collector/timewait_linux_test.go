package collector_test

import (
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/internal/nstest"
	"github.com/closeload/closeload/kernel"
	"github.com/closeload/closeload/results"
)

// clientTimewait reads the client side's events until cond holds of them,
// for at most 30 s: the kernel ends mini-sockets from its timer wheel, and
// on a loaded machine a segment lost from the loopback backlog waits for
// its retransmission.
func clientTimewait(t *testing.T, tr *collector.Tracer, cond func(results.EventGroup) bool) results.EventGroup {
	t.Helper()
	var g results.EventGroup
	var missed uint64
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		ev, err := tr.Read()
		if err != nil {
			t.Fatal(err)
		}
		if lt := ev.Methods["time_wait_lifetime"]; strings.HasPrefix(lt, results.MethodNotMeasured) {
			t.Fatalf("time_wait_lifetime: %s", lt)
		}
		missed = ev.Missed
		if p := ev.Group("tw", results.SideClient); p != nil {
			g = *p
			if cond(g) {
				return g
			}
		}
	}
	t.Fatalf("client side never got there (%d events missed): %+v", missed, g)
	return g
}

// makeOrphans sets tcp_fin_timeout to 1 s in the test's namespace, opens
// a tracer following mini-sockets, and makes n connections whose clients
// close while the server holds its end open (its connections come on
// held), so each client's end becomes an orphaned FIN_WAIT2 mini-socket.
func makeOrphans(t *testing.T, n int) (*collector.Tracer, chan net.Conn) {
	t.Helper()
	if err := kernel.NewFS("").WriteSysctl("net.ipv4.tcp_fin_timeout", "1"); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	tr := openTracerConfig(t, collector.TracerConfig{Targets: []collector.TracerTarget{{Port: uint16(ln.Addr().(*net.TCPAddr).Port), Scenario: "tw"}}, Timewait: true})
	held := make(chan net.Conn, n)
	go func() {
		for range n {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held <- c
		}
	}()
	for range n {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	return tr, held
}

// TestTracerOrphanLifetime checks the lifetime of orphaned FIN_WAIT2
// mini-sockets against the namespace's tcp_fin_timeout: clients close
// while the server holds its end open, so each orphan is handed to a
// mini-socket that lives tcp_fin_timeout.
func TestTracerOrphanLifetime(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		const n, finTimeout = 10, time.Second
		tr, held := makeOrphans(t, n)
		defer func() { // after the orphans are gone: a FIN now would meet no mini-socket
			for range n {
				(<-held).Close()
			}
		}()
		g := clientTimewait(t, tr, func(g results.EventGroup) bool { return g.Dwell[results.StateOrphanFinWait2].Count >= n })
		d := g.Dwell[results.StateOrphanFinWait2]
		// The timer wheel rounds a 1 s timer up by at most 1/8 of it; it
		// counts from the current jiffy (up to 10 ms back), and the
		// histogram records a bucket's midpoint (within 1/32).
		lo, hi := finTimeout*95/100, finTimeout*5/4
		if p50 := time.Duration(d.P50); d.Count != n || p50 < lo || p50 > hi {
			t.Errorf("%s lifetime: %d mini-sockets, p50 %v; want %d, %v to %v", results.StateOrphanFinWait2, d.Count, p50, n, lo, hi)
		}
		if g.TimeWaitHandovers["FIN_WAIT2"] != n || len(g.TimeWaitKilled) != 0 {
			t.Errorf("hand-overs %v, killed %v; want FIN_WAIT2 %d, none killed", g.TimeWaitHandovers, g.TimeWaitKilled, n)
		}
	})
}

// TestTracerTimewaitKilled takes TIME_WAIT mini-sockets over with a new
// connection of the same addresses and ports (a SYN the kernel accepts in
// TIME_WAIT, RFC 6191): each is killed long before its 60 s, and counted
// so with its short lifetime.
func TestTracerTimewaitKilled(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		const n = 5
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		server := ln.Addr().(*net.TCPAddr)
		tr := openTracerConfig(t, collector.TracerConfig{Targets: []collector.TracerTarget{{Port: uint16(server.Port), Scenario: "tw"}}, Timewait: true})
		reuse := func(network, address string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) }); err != nil {
				return err
			}
			return serr
		}
		var clients []*net.TCPAddr
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range n {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				io.Copy(io.Discard, c)
				c.Close()
			}
		}()
		for range n {
			// SO_REUSEADDR, so that the port can be listened on again
			// while its mini-socket waits.
			c, err := (&net.Dialer{Control: reuse, Timeout: 5 * time.Second}).Dial("tcp", server.String())
			if err != nil {
				t.Fatal(err)
			}
			clients = append(clients, c.LocalAddr().(*net.TCPAddr))
			c.(*net.TCPConn).CloseWrite() // the client closes first: its end waits in TIME_WAIT
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.Copy(io.Discard, c)
			c.Close()
		}
		<-done
		ln.Close()
		clientTimewait(t, tr, func(g results.EventGroup) bool { return g.TimeWaitOpen["TIME_WAIT"] == n })
		born := time.Now()
		for _, ca := range clients {
			// Listen where the mini-socket is, dial from the old server
			// port: the SYN meets the mini-socket, which gives way.
			l2, err := net.Listen("tcp", ca.String())
			if err != nil {
				t.Fatal(err)
			}
			d := net.Dialer{LocalAddr: server, Control: reuse, Timeout: 5 * time.Second}
			c, err := d.Dial("tcp", ca.String())
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			l2.Close()
		}
		g := clientTimewait(t, tr, func(g results.EventGroup) bool { return g.TimeWaitKilled["TIME_WAIT"] >= n })
		d := g.Dwell["TIME_WAIT"]
		if g.TimeWaitKilled["TIME_WAIT"] != n || d.Count != n || time.Duration(d.Max) > time.Since(born)+5*time.Second {
			t.Errorf("killed %v, TIME_WAIT lifetime %d mini-sockets up to %v; want %d killed within %v", g.TimeWaitKilled, d.Count,
				time.Duration(d.Max), n, time.Since(born)+5*time.Second)
		}
	})
}

// TestTracerTimewaitRearm lets the server close while its clients'
// orphans wait as FIN_WAIT2 mini-sockets: the FIN turns each into
// TIME_WAIT and re-arms its timer for 60 s (a cancel and a start of the
// same timer), which is neither an end nor a kill. Each orphan's FIN_WAIT2
// life ends there, shorter than the 1 s tcp_fin_timeout, and its TIME_WAIT
// begins: after that second they are all still open, in TIME_WAIT.
func TestTracerTimewaitRearm(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		const n = 10
		tr, held := makeOrphans(t, n)
		clientTimewait(t, tr, func(g results.EventGroup) bool { return g.TimeWaitOpen[results.StateOrphanFinWait2] == n })
		for range n {
			(<-held).Close()
		}
		time.Sleep(1500 * time.Millisecond) // past tcp_fin_timeout
		g := clientTimewait(t, tr, func(results.EventGroup) bool { return true })
		orphan := g.Dwell[results.StateOrphanFinWait2]
		if g.TimeWaitOpen["TIME_WAIT"] != n || len(g.TimeWaitKilled) != 0 || orphan.Count != n || time.Duration(orphan.Max) >= time.Second {
			t.Errorf("open %v, killed %v, FIN_WAIT2_ORPHAN %d up to %v; want %d open in TIME_WAIT, none killed, %d orphans under 1s",
				g.TimeWaitOpen, g.TimeWaitKilled, orphan.Count, time.Duration(orphan.Max), n, n)
		}
	})
}
