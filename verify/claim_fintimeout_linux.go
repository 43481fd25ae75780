package verify

import (
	"context"
	"fmt"
	"math"
	"net"
	"strings"
	"time"

	"github.com/closeload/closeload/internal/ctxtime"
)

// userHZ is the clock-tick rate of /proc/net/tcp's "tm->when" column
// (jiffies_delta_to_clock_t: USER_HZ, 100 on every architecture closeload
// runs on). fin-timeout-timewait measures it and reports the measured rate.
const userHZ = 100

// finTimeout is what the experiments set tcp_fin_timeout to.
const finTimeout = 2

var claimFinTimeoutFinWait2 = Claim{
	Name:      "fin-timeout-finwait2",
	Statement: "tcp_fin_timeout shortens FIN_WAIT_2.",
	Source:    "seed article §4.3 (tcp_fin_timeout:控制 FIN_WAIT_2 状态超时时间)",
	Run:       runFinTimeoutFinWait2,
}

// timerSummary returns the count of sockets kept by keep and the largest
// time left on their timers, in seconds (at userHZ).
func timerSummary(socks []Socket, keep side) (n int, states map[string]int, maxLeft float64, kinds map[int]int) {
	states, kinds = map[string]int{}, map[int]int{}
	for _, s := range socks {
		if !keep(s) {
			continue
		}
		n++
		states[s.State]++
		if s.Orphaned() {
			states[s.State+"/orphan"]++
		}
		kinds[s.Timer]++
		maxLeft = math.Max(maxLeft, float64(s.TimerTicks)/userHZ)
	}
	return n, states, maxLeft, kinds
}

// runFinTimeoutFinWait2: orphaned FIN_WAIT_2 sockets (client Close while
// the server keeps its side open) under the default tcp_fin_timeout and
// under 2 s, next to sockets half-closed with CloseWrite that keep their
// descriptor; all are watched for 2.5 × 2 s.
func runFinTimeoutFinWait2(ctx context.Context, env *Env) Result {
	var r Result
	const n = 5
	def, err := env.Get("net.ipv4.tcp_fin_timeout")
	if err != nil {
		return failed(r, err)
	}
	ln, err := listen(0)
	if err != nil {
		return failed(r, err)
	}
	defer ln.Close()
	var servers []*net.TCPConn
	defer func() { closeAll(servers) }()
	// group opens n connections and ends each client side with end.
	group := func(end func(*net.TCPConn)) (map[uint16]bool, []*net.TCPConn, error) {
		cs, ss, err := pairs(ctx, ln, n)
		if err != nil {
			return nil, nil, err
		}
		servers = append(servers, ss...)
		ports := portsOf(cs)
		for _, c := range cs {
			end(c)
		}
		// An orphan's timer is set from tcp_fin_timeout when the ACK of its
		// FIN arrives, and the peer may delay that ACK: wait for FIN_WAIT2
		// before the setting changes.
		if !waitUntil(ctx, 2*time.Second, func() bool {
			m, err := env.States(localPorts(ports))
			return err == nil && m["FIN_WAIT2"] == n
		}) {
			_, st := env.statesOr(localPorts(ports))
			return nil, nil, fmt.Errorf("the clients did not reach FIN_WAIT2: %s", st)
		}
		return ports, cs, nil
	}
	orphanDefault, _, err := group(func(c *net.TCPConn) { c.Close() })
	if err != nil {
		return failed(r, err)
	}
	if err := env.Set(fmt.Sprintf("net.ipv4.tcp_fin_timeout=%d", finTimeout)); err != nil {
		return failed(r, err)
	}
	orphanShort, _, err := group(func(c *net.TCPConn) { c.Close() })
	if err != nil {
		return failed(r, err)
	}
	halfPorts, halfConns, err := group(func(c *net.TCPConn) { _ = c.CloseWrite() })
	if err != nil {
		return failed(r, err)
	}
	defer closeAll(halfConns)
	t0 := time.Now()
	time.Sleep(100 * time.Millisecond)
	socks, err := env.Sockets()
	if err != nil {
		return failed(r, err)
	}
	_, stD, leftD, _ := timerSummary(socks, localPorts(orphanDefault))
	_, stS, leftS, _ := timerSummary(socks, localPorts(orphanShort))
	_, stH, leftH, kindsH := timerSummary(socks, localPorts(halfPorts))

	// Watch until the short orphans are gone, then on to 2.5 × the timeout.
	var goneAfter float64 = -1
	waitUntil(ctx, 2*finTimeout*time.Second+2*time.Second, func() bool {
		socks, err := env.Sockets()
		if err != nil {
			return false
		}
		k, _, _, _ := timerSummary(socks, localPorts(orphanShort))
		if k == 0 && goneAfter < 0 {
			goneAfter = time.Since(t0).Seconds()
		}
		return goneAfter >= 0
	})
	if err := ctxtime.Sleep(ctx, time.Until(t0.Add(finTimeout*2500*time.Millisecond))); err != nil {
		return failed(r, err)
	}
	watched := time.Since(t0).Seconds()
	socks, err = env.Sockets()
	if err != nil {
		return failed(r, err)
	}
	nD, endD, endLeftD, _ := timerSummary(socks, localPorts(orphanDefault))
	nS, _, _, _ := timerSummary(socks, localPorts(orphanShort))
	nH, endH, _, _ := timerSummary(socks, localPorts(halfPorts))
	_, srv := env.statesOr(serverSide(portOf(ln.Addr())))

	r.add(fmt.Sprintf("orphans closed under tcp_fin_timeout=%s", def), "%s, timer left %.1f s; after %.1f s: %d left (%s), %.1f s to go",
		fmtStates(stD), leftD, watched, nD, fmtStates(endD), endLeftD)
	r.add(fmt.Sprintf("orphans closed under tcp_fin_timeout=%d", finTimeout), "%s, timer left %.1f s; all gone after %s",
		fmtStates(stS), leftS, secondsOrNever(goneAfter))
	r.add(fmt.Sprintf("CloseWrite, descriptor kept, tcp_fin_timeout=%d", finTimeout), "%s, %s; after %.1f s: %s",
		fmtStates(stH), timerText(kindsH, leftH), watched, fmtStates(endH))
	r.add("server side (never closed)", "%s", srv)

	orphanReaped := nS == 0 && goneAfter >= 0 && goneAfter <= finTimeout+2
	fdKept := nH == n && endH["FIN_WAIT2"] == n
	switch {
	case leftD < 10:
		r.Verdict = Inconclusive
		r.Finding = fmt.Sprintf("the control orphans got a %.1f s timer under tcp_fin_timeout=%s", leftD, def)
	case orphanReaped && fdKept:
		r.Verdict = HoldsOnlyWhen
		r.Condition = "the FIN_WAIT_2 socket is orphaned (its descriptor closed)"
		r.Finding = fmt.Sprintf("orphaned FIN_WAIT_2 sockets went after %.1f s with tcp_fin_timeout=%d (about %.0f s left under %s); half-closed sockets that keep their descriptor were still in FIN_WAIT_2 after %.1f s, with no timer",
			goneAfter, finTimeout, leftD, def, watched)
	case orphanReaped && nH == 0:
		r.Verdict = Holds
		r.Finding = fmt.Sprintf("both orphaned and descriptor-holding FIN_WAIT_2 sockets went within %.1f s", watched)
	case nS == n:
		r.Verdict = DoesNotHold
		r.Finding = fmt.Sprintf("orphaned FIN_WAIT_2 sockets were all still there after %.1f s with tcp_fin_timeout=%d", watched, finTimeout)
	default:
		r.Verdict = Inconclusive
		r.Finding = fmt.Sprintf("after %.1f s: %d of %d short-timeout orphans and %d of %d half-closed sockets left", watched, nS, n, nH, n)
	}
	return r
}

// timerNames name the kinds of the "tr" column of /proc/net/tcp.
var timerNames = map[int]string{0: "no timer", 1: "retransmit timer", 2: "keepalive timer", 3: "timewait timer", 4: "probe timer"}

// timerText says which timers the sockets had ("no timer on 5") and, when
// left >= 0 and a timer runs, the most time left on one.
func timerText(kinds map[int]int, left float64) string {
	var parts []string
	for k := 0; k <= 4; k++ {
		if kinds[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s on %d", timerNames[k], kinds[k]))
		}
	}
	s := strings.Join(parts, ", ")
	if left > 0 {
		s += fmt.Sprintf(", %.1f s left", left)
	}
	return s
}

func secondsOrNever(s float64) string {
	if s < 0 {
		return "never (within the watch)"
	}
	return fmt.Sprintf("%.1f s", s)
}

var claimFinTimeoutTimeWait = Claim{
	Name:      "fin-timeout-timewait",
	Statement: "tcp_fin_timeout shortens TIME_WAIT.",
	Source:    "folklore (seed article §4.3 lists it among the knobs for closing sockets)",
	Run:       runFinTimeoutTimeWait,
}

// makeTimeWaits makes n client-side TIME_WAIT sockets: half the clients
// keep their descriptor until the server's FIN arrives, half are orphaned
// first (both roads into TIME_WAIT). It returns their local ports.
func makeTimeWaits(ctx context.Context, env *Env, ln *net.TCPListener, n int) (map[uint16]bool, error) {
	cs, ss, err := pairs(ctx, ln, n)
	if err != nil {
		return nil, err
	}
	ports := portsOf(cs)
	for i := range cs {
		if i%2 == 0 {
			_ = cs[i].CloseWrite()
		} else {
			cs[i].Close()
		}
		_, _ = readAll(ss[i], 2*time.Second)
		ss[i].Close()
		if i%2 == 0 {
			_, _ = readAll(cs[i], 2*time.Second)
			cs[i].Close()
		}
	}
	if !waitUntil(ctx, 2*time.Second, func() bool {
		m, err := env.States(localPorts(ports))
		return err == nil && m["TIME_WAIT"] == n
	}) {
		_, st := env.statesOr(localPorts(ports))
		return nil, fmt.Errorf("the clients did not all reach TIME_WAIT: %s", st)
	}
	return ports, nil
}

// runFinTimeoutTimeWait makes TIME_WAIT sockets under the default
// tcp_fin_timeout and under 2 s, reads the time left on their timers, and
// watches the short-timeout ones for 3.5 s. Two timer readings give the
// tick rate, so the timer's length is measured, not assumed.
func runFinTimeoutTimeWait(ctx context.Context, env *Env) Result {
	var r Result
	const n = 6
	def, err := env.Get("net.ipv4.tcp_fin_timeout")
	if err != nil {
		return failed(r, err)
	}
	ln, err := listen(0)
	if err != nil {
		return failed(r, err)
	}
	defer ln.Close()
	defPorts, err := makeTimeWaits(ctx, env, ln, n)
	if err != nil {
		return failed(r, err)
	}
	if err := env.Set(fmt.Sprintf("net.ipv4.tcp_fin_timeout=%d", finTimeout)); err != nil {
		return failed(r, err)
	}
	shortPorts, err := makeTimeWaits(ctx, env, ln, n)
	if err != nil {
		return failed(r, err)
	}
	t0 := time.Now()
	s0, err := env.Sockets()
	if err != nil {
		return failed(r, err)
	}
	if err := ctxtime.Sleep(ctx, finTimeout*time.Second+1500*time.Millisecond); err != nil {
		return failed(r, err)
	}
	t1 := time.Now()
	s1, err := env.Sockets()
	if err != nil {
		return failed(r, err)
	}
	tw := func(ports map[uint16]bool) side {
		return func(s Socket) bool { return ports[s.Local.Port()] && s.State == "TIME_WAIT" }
	}
	nD0, _, _, _ := timerSummary(s0, tw(defPorts))
	nS0, _, _, kinds := timerSummary(s0, tw(shortPorts))
	nS1, _, _, _ := timerSummary(s1, tw(shortPorts))
	ticks0 := minTicks(s0, tw(shortPorts))
	ticks1 := minTicks(s1, tw(shortPorts))
	defTicks := minTicks(s0, tw(defPorts))
	elapsed := t1.Sub(t0).Seconds()
	r.add(fmt.Sprintf("TIME_WAIT made under tcp_fin_timeout=%s", def), "%d sockets, timer left %s", nD0, ticksText(defTicks))
	r.add(fmt.Sprintf("TIME_WAIT made under tcp_fin_timeout=%d", finTimeout), "%d sockets (%s), timer left %s", nS0, timerText(kinds, -1), ticksText(ticks0))
	r.add(fmt.Sprintf("same sockets %.1f s later", elapsed), "%d still in TIME_WAIT, timer left %s", nS1, ticksText(ticks1))
	// The tick rate needs a socket in both readings; when all are gone the
	// disappearance itself decides.
	rate := -1.0
	if ticks0 >= 0 && ticks1 >= 0 {
		rate = float64(ticks0-ticks1) / elapsed
		r.add("timer clock measured", "%.0f ticks/s (USER_HZ %d)", rate, userHZ)
	}
	length := float64(ticks0) / userHZ
	switch {
	case nS0 != n:
		r.Verdict = Inconclusive
		r.Finding = fmt.Sprintf("%d of %d TIME_WAIT sockets seen", nS0, n)
	case nS1 == 0:
		r.Verdict = Holds
		r.Finding = fmt.Sprintf("all %d TIME_WAIT sockets made under tcp_fin_timeout=%d were gone %.1f s later (timer started at %.1f s)", n, finTimeout, elapsed, length)
	case rate < userHZ*0.7 || rate > userHZ*1.3:
		r.Verdict = Inconclusive
		r.Finding = fmt.Sprintf("%d of %d TIME_WAIT sockets seen, timer clock %.0f ticks/s", nS0, n, rate)
	case nS1 == n && length > 50:
		r.Verdict = DoesNotHold
		r.Finding = fmt.Sprintf("with tcp_fin_timeout=%d the TIME_WAIT timer still started at %.1f s (%.1f s under tcp_fin_timeout=%s); all %d sockets were still there %.1f s later",
			finTimeout, length, float64(defTicks)/userHZ, def, n, elapsed)
	default:
		r.Verdict = Inconclusive
		r.Finding = fmt.Sprintf("timer started at %.1f s; %d of %d left after %.1f s", length, nS1, n, elapsed)
	}
	return r
}

// minTicks is the smallest timer among the kept sockets, -1 if none.
func minTicks(socks []Socket, keep side) int64 {
	m := int64(-1)
	for _, s := range socks {
		if keep(s) && (m < 0 || s.TimerTicks < m) {
			m = s.TimerTicks
		}
	}
	return m
}

func ticksText(t int64) string {
	if t < 0 {
		return "(no socket)"
	}
	return fmt.Sprintf("%d ticks = %.1f s", t, float64(t)/userHZ)
}
