package verify

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"
)

var claimCloseAfterData = Claim{
	Name:      "close-after-data",
	Statement: "Close() instead of CloseWrite() closes both directions, so data the peer sends afterwards is lost (answered with RST).",
	Source:    "seed article §1 (若仅调用 conn.Close(),会直接关闭双向通道,可能导致对方未发送完的数据丢失)",
	Run:       runCloseAfterData,
}

const (
	cadConns   = 10
	cadRequest = 100
	cadReply   = 16 << 10
)

// cadServer is what one server saw while answering a client that had
// already closed: how its request read ended and what its replies returned.
type cadServer struct {
	readEnd  string
	first    string // the first reply write
	second   string // a second write, 100 ms later
	accepted int    // bytes the first write handed to the kernel
}

// cadOutcome is one phase: what the clients received, what the servers saw.
type cadOutcome struct {
	received          int64 // reply bytes the clients read, in total
	firstOK, laterErr int
	errs              map[string]int
	rsts, abortData   int64
	states            string
}

func (o cadOutcome) String() string {
	return fmt.Sprintf("clients read %d reply bytes in total; servers' first write accepted on %d/%d, second write failed on %d (%s); Tcp.OutRsts +%d, TCPAbortOnData +%d; afterwards: %s",
		o.received, o.firstOK, cadConns, o.laterErr, fmtCounts(o.errs), o.rsts, o.abortData, o.states)
}

// runCloseAfterData: ten clients send a 100-byte request and end with
// Close (experiment) or CloseWrite (control). Each server reads the request
// to EOF, then writes a 16 KiB reply and, 100 ms later, a second one; the
// clients that used CloseWrite read to EOF.
func runCloseAfterData(ctx context.Context, env *Env) Result {
	var r Result
	phase := func(full bool) (cadOutcome, error) {
		o := cadOutcome{errs: map[string]int{}}
		ln, err := listen(0)
		if err != nil {
			return o, err
		}
		defer ln.Close()
		sport := portOf(ln.Addr())
		clients, servers, err := pairs(ctx, ln, cadConns)
		if err != nil {
			return o, err
		}
		defer closeAll(clients)
		defer closeAll(servers)
		before, err := env.takeCounters()
		if err != nil {
			return o, err
		}
		req, reply := make([]byte, cadRequest), make([]byte, cadReply)
		var (
			mu   sync.Mutex
			wg   sync.WaitGroup
			seen []cadServer
		)
		for i := range clients {
			wg.Add(2)
			go func() {
				defer wg.Done()
				c := clients[i]
				_, _ = c.Write(req)
				if full {
					c.Close()
					return
				}
				_ = c.CloseWrite()
				n, _ := readAll(c, 3*time.Second)
				mu.Lock()
				o.received += n
				mu.Unlock()
			}()
			go func() {
				defer wg.Done()
				s := servers[i]
				var sv cadServer
				_, err := readAll(s, 3*time.Second)
				sv.readEnd = errName(err)
				_ = s.SetWriteDeadline(time.Now().Add(2 * time.Second))
				n, err := s.Write(reply)
				sv.accepted, sv.first = n, errName(err)
				time.Sleep(100 * time.Millisecond)
				_, err = s.Write(reply)
				sv.second = errName(err)
				s.Close()
				mu.Lock()
				seen = append(seen, sv)
				mu.Unlock()
			}()
		}
		wg.Wait()
		time.Sleep(50 * time.Millisecond)
		after, err := env.takeCounters()
		if err != nil {
			return o, err
		}
		for _, sv := range seen {
			if sv.first == "nil" && sv.accepted == cadReply {
				o.firstOK++
			}
			if sv.second != "nil" {
				o.laterErr++
				o.errs[sv.second]++
			}
		}
		o.rsts = delta(before, after, "Tcp.OutRsts")
		o.abortData = delta(before, after, "TcpExt.TCPAbortOnData")
		_, cli := env.statesOr(clientSide(sport))
		_, srv := env.statesOr(serverSide(sport))
		o.states = "client side " + cli + "; server side " + srv
		return o, nil
	}
	ctl, err := phase(false)
	if err != nil {
		return failed(r, err)
	}
	exp, err := phase(true)
	if err != nil {
		return failed(r, err)
	}
	r.add("control: request, CloseWrite, read the reply", "%s", ctl)
	r.add("request, then Close (both directions)", "%s", exp)
	r.figure("control_received_bytes", float64(ctl.received))
	r.figure("control_rsts", float64(ctl.rsts))
	r.figure("close_received_bytes", float64(exp.received))
	r.figure("close_rsts", float64(exp.rsts))
	r.figure("close_abort_on_data", float64(exp.abortData))
	r.figure("close_first_write_ok", float64(exp.firstOK))
	r.figure("close_second_write_failed", float64(exp.laterErr))
	lost := int64(exp.firstOK) * cadReply
	switch {
	case ctl.received != cadConns*2*cadReply || ctl.rsts != 0:
		r.Verdict = Inconclusive
		r.Finding = fmt.Sprintf("the control did not receive its replies whole (%d of %d bytes, %d RST)", ctl.received, cadConns*2*cadReply, ctl.rsts)
	case exp.firstOK >= cadConns*9/10 && exp.rsts >= int64(cadConns*9/10) && exp.laterErr >= cadConns*9/10:
		r.Verdict = Holds
		r.Finding = fmt.Sprintf("after the peer's Close its kernel answered the reply with RST (Tcp.OutRsts +%d, TCPAbortOnData +%d): the servers' first writes succeeded, yet those %d bytes were never read, and the next write failed (%s); with CloseWrite all %d bytes arrived",
			exp.rsts, exp.abortData, lost, fmtCounts(exp.errs), ctl.received)
	case exp.rsts == 0 && exp.laterErr == 0:
		r.Verdict = DoesNotHold
		r.Finding = "data sent after the peer's Close was accepted without RST"
	default:
		r.Verdict = Inconclusive
		r.Finding = fmt.Sprintf("after Close: %s", exp)
	}
	return r
}

// fmtCounts renders a count by name compactly: "EPIPE 9, ECONNRESET 1".
func fmtCounts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	out := ""
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if out != "" {
			out += ", "
		}
		out += fmt.Sprintf("%s %d", k, m[k])
	}
	return out
}
