package verify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

var claimDeadlineReset = Claim{
	Name:      "deadline-reset",
	Statement: "After a read timeout the deadline can be set again: the connection stays usable, data sent after the timeout is read once the deadline is moved, and err.Timeout() is true.",
	Source:    "seed article §2.4 (SetReadDeadline 调用后可重设; err 为 net.Error 且 Timeout() == true)",
	Run:       runDeadlineReset,
}

const (
	deadlineRounds  = 3
	deadlineTimeout = 100 * time.Millisecond
	deadlineMsg     = 512
)

// deadlineRound is one timeout and what came after it.
type deadlineRound struct {
	waited      time.Duration // how long the timed-out Read blocked
	timeout     bool          // err.(net.Error).Timeout()
	exceeded    bool          // errors.Is(err, os.ErrDeadlineExceeded)
	staleErr    string        // a Read with the expired deadline left in place
	staleWaited time.Duration
	got         int    // bytes read after the deadline was moved
	gotErr      string // how that read ended
}

// runDeadlineReset: three rounds on one connection. The server reads with
// a 100 ms deadline and nothing arrives, so the read times out; the client
// then sends 512 bytes; the server reads once more with the expired
// deadline left in place, then moves the deadline 1 s ahead and reads the
// 512 bytes. Finally the server replies and the client checks the reply.
func runDeadlineReset(ctx context.Context, env *Env) Result {
	var r Result
	ln, err := listen(0)
	if err != nil {
		return failed(r, err)
	}
	defer ln.Close()
	sport := portOf(ln.Addr())
	c, s, err := pair(ctx, ln)
	if err != nil {
		return failed(r, err)
	}
	defer c.Close()
	defer s.Close()
	before, err := env.takeCounters()
	if err != nil {
		return failed(r, err)
	}
	msg := make([]byte, deadlineMsg)
	buf := make([]byte, 4*deadlineMsg)
	var rounds []deadlineRound
	var states []string
	for i := 0; i < deadlineRounds; i++ {
		var d deadlineRound
		_ = s.SetReadDeadline(time.Now().Add(deadlineTimeout))
		t0 := time.Now()
		_, err := s.Read(buf)
		d.waited = time.Since(t0)
		var ne net.Error
		d.timeout = errors.As(err, &ne) && ne.Timeout()
		d.exceeded = errors.Is(err, os.ErrDeadlineExceeded)
		if _, err := c.Write(msg); err != nil {
			return failed(r, fmt.Errorf("client write after the timeout: %w", err))
		}
		time.Sleep(20 * time.Millisecond) // the bytes are in the server's queue
		t1 := time.Now()
		_, err = s.Read(buf)
		d.staleErr, d.staleWaited = errName(err), time.Since(t1)
		_ = s.SetReadDeadline(time.Now().Add(time.Second))
		for d.got < deadlineMsg {
			n, err := s.Read(buf)
			d.got += n
			if err != nil {
				d.gotErr = errName(err)
				break
			}
		}
		_, st := env.statesOr(serverSide(sport))
		states = append(states, st)
		rounds = append(rounds, d)
	}
	_ = s.SetWriteDeadline(time.Now().Add(time.Second))
	_, werr := s.Write(msg)
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	var echoed int
	for echoed < deadlineMsg {
		n, err := c.Read(buf)
		echoed += n
		if err != nil {
			break
		}
	}
	after, err := env.takeCounters()
	if err != nil {
		return failed(r, err)
	}
	var timeouts, exceeded, staleTimeouts, resumed int
	var minWait, maxWait time.Duration
	for i, d := range rounds {
		if d.timeout {
			timeouts++
		}
		if d.exceeded {
			exceeded++
		}
		if d.staleErr == "timeout" {
			staleTimeouts++
		}
		if d.got == deadlineMsg {
			resumed++
		}
		if i == 0 || d.waited < minWait {
			minWait = d.waited
		}
		if d.waited > maxWait {
			maxWait = d.waited
		}
		r.add(fmt.Sprintf("round %d", i+1), "Read with a %v deadline returned after %.0f ms, Timeout() %v, os.ErrDeadlineExceeded %v; with the expired deadline left in place the next Read returned %s after %.1f ms; after SetReadDeadline(+1 s) it read %d of %d bytes sent after the timeout%s; server socket %s",
			deadlineTimeout, ms(d.waited), d.timeout, d.exceeded, d.staleErr, ms(d.staleWaited), d.got, deadlineMsg, endNote(d.gotErr), states[i])
	}
	rsts := delta(before, after, "Tcp.OutRsts")
	r.add("after the rounds", "the server's reply (write %s) reached the client: %d of %d bytes; Tcp.OutRsts +%d", errName(werr), echoed, deadlineMsg, rsts)
	r.figure("timeouts", float64(timeouts))
	r.figure("resumed_reads", float64(resumed))
	r.figure("stale_deadline_timeouts", float64(staleTimeouts))
	r.figure("timed_out_read_min_seconds", minWait.Seconds())
	r.figure("timed_out_read_max_seconds", maxWait.Seconds())
	r.figure("reply_bytes", float64(echoed))
	r.figure("rsts", float64(rsts))
	switch {
	case timeouts == deadlineRounds && exceeded == deadlineRounds && resumed == deadlineRounds && echoed == deadlineMsg && rsts == 0:
		r.Verdict = Holds
		r.Finding = fmt.Sprintf("each of %d timed-out reads (%.0f–%.0f ms for a %v deadline) had Timeout() true and left the connection ESTABLISHED; the bytes sent after the timeout were read once the deadline was moved, and the reply went through; a Read with the expired deadline still in place fails at once (%d of %d), so the deadline must be moved",
			deadlineRounds, ms(minWait), ms(maxWait), deadlineTimeout, staleTimeouts, deadlineRounds)
	case resumed == 0 && timeouts > 0:
		r.Verdict = DoesNotHold
		r.Finding = "after a read timeout no data could be read from the connection, even with a new deadline"
	default:
		r.Verdict = Inconclusive
		r.Finding = fmt.Sprintf("%d of %d reads timed out, %d resumed, reply %d bytes", timeouts, deadlineRounds, resumed, echoed)
	}
	return r
}

// ms converts a duration to milliseconds for evidence text.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func endNote(errText string) string {
	if errText == "" {
		return ""
	}
	return " (ended with " + errText + ")"
}
