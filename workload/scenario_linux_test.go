package workload

import (
	"bufio"
	"context"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/internal/nstest"
)

// sideStates counts TCP states of the sockets of one target, split by side:
// the target's own sockets (local port is the target's) and the client's
// (remote port is the target's). The collector counts both sides together;
// which side holds TIME_WAIT is the point of these tests.
type sideStates struct{ target, client map[string]int }

var tcpStates = map[string]string{"01": "ESTABLISHED", "04": "FIN_WAIT1", "05": "FIN_WAIT2", "06": "TIME_WAIT",
	"07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}

func readSides(t *testing.T, port uint16) sideStates {
	t.Helper()
	s := sideStates{map[string]int{}, map[string]int{}}
	hexPort := strings.ToUpper(strconv.FormatUint(uint64(port)|0x10000, 16)[1:])
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || fields[0] == "sl" {
				continue
			}
			st := tcpStates[fields[3]]
			if strings.HasSuffix(fields[1], ":"+hexPort) {
				s.target[st]++
			} else if strings.HasSuffix(fields[2], ":"+hexPort) {
				s.client[st]++
			}
		}
		fh.Close()
	}
	return s
}

type scenarioRun struct {
	pool   *Pool
	target *Target
	counts Counts
	tc     Counts
	port   uint16
}

func runScenario(t *testing.T, s Scenario, cycles uint64, mod func(*Config, *TargetConfig)) scenarioRun {
	t.Helper()
	tcfg := TargetConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Scenarios: []Scenario{s}, Acceptors: 4,
		RequestSize: 64, ResponseSize: 100, Hold: 50 * time.Millisecond, Timeout: 5 * time.Second}
	cfg := Config{Mix: NewMix(s), Conns: 4, Cycles: cycles, Duration: 30 * time.Second,
		Sources:     DefaultSources(netip.MustParseAddr("127.0.0.1"))[:8],
		RequestSize: 64, ResponseSize: 100, Hold: 50 * time.Millisecond, Timeout: 5 * time.Second}
	if mod != nil {
		mod(&cfg, &tcfg)
	}
	target, err := StartTarget(tcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(target.Close)
	cfg.Targets = target.Addrs()
	pool, err := NewPool(cfg, collector.NewLatencySink(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	return scenarioRun{pool: pool, target: target, counts: pool.Counts(0), port: cfg.Targets[0].Port()}
}

// settle waits until the target has served every connection (the client
// can finish before the target's last Close), bounded.
func (r *scenarioRun) settle(t *testing.T, want uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		r.tc = r.target.Counts(r.pool.cfg.Mix.Entries[0].Scenario)
		if r.tc.Cycles+r.tc.ErrorTotal() >= want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// complete fails the test unless all want connections completed without
// error.
func (r *scenarioRun) complete(t *testing.T, want uint64) {
	t.Helper()
	if r.counts.Cycles != want || r.counts.ErrorTotal() != 0 {
		t.Fatalf("cycles %d errors %v, want %d and none", r.counts.Cycles, r.counts.Errors, want)
	}
}

func atLeast(t *testing.T, what string, got, want uint64) {
	t.Helper()
	if got < want {
		t.Errorf("%s = %d, want at least %d", what, got, want)
	}
}

func atMost(t *testing.T, what string, got, want uint64) {
	t.Helper()
	if got > want {
		t.Errorf("%s = %d, want at most %d", what, got, want)
	}
}

// TestScenarioHalves runs both halves of every scenario against the real
// kernel in a fresh network namespace and checks what the kernel shows:
// EOF or reset, bytes, and which side holds TIME_WAIT (as ranges: about
// 0.3% of closes under churn end otherwise).
func TestScenarioHalves(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		const n = 400
		most, few := uint64(n*9/10), uint64(n/20)

		t.Run("client-halfclose", func(t *testing.T) {
			r := runScenario(t, ClientHalfClose, n, nil)
			r.settle(t, n)
			r.complete(t, n)
			atLeast(t, "client EOFs", r.counts.EOF, n)
			if r.counts.Received != n*100 || r.counts.Sent != n*64 {
				t.Errorf("bytes sent %d received %d, want %d and %d", r.counts.Sent, r.counts.Received, n*64, n*100)
			}
			atLeast(t, "target EOFs (client's half-close seen)", r.tc.EOF, n)
			s := readSides(t, r.port)
			atLeast(t, "client TIME_WAIT", uint64(s.client["TIME_WAIT"]), most)
			atMost(t, "target TIME_WAIT", uint64(s.target["TIME_WAIT"]), few)
		})

		t.Run("server-halfclose", func(t *testing.T) {
			r := runScenario(t, ServerHalfClose, n, nil)
			r.settle(t, n)
			r.complete(t, n)
			atLeast(t, "client EOFs", r.counts.EOF, n)
			atLeast(t, "target received the trailers", r.tc.Received, n*64)
			s := readSides(t, r.port)
			atLeast(t, "target TIME_WAIT", uint64(s.target["TIME_WAIT"]), most)
			atMost(t, "client TIME_WAIT", uint64(s.client["TIME_WAIT"]), few)
		})

		t.Run("simultaneous", func(t *testing.T) {
			r := runScenario(t, Simultaneous, n, nil)
			r.settle(t, n)
			r.complete(t, n)
			s := readSides(t, r.port)
			// Both sides send their FIN at once; the side whose FIN goes out
			// first, or both when they cross, end in TIME_WAIT.
			atLeast(t, "TIME_WAIT on either side", uint64(s.client["TIME_WAIT"]+s.target["TIME_WAIT"]), most)
			t.Logf("TIME_WAIT client %d, target %d", s.client["TIME_WAIT"], s.target["TIME_WAIT"])
		})

		t.Run("full-close", func(t *testing.T) {
			r := runScenario(t, FullClose, n, nil)
			r.settle(t, n)
			r.complete(t, n)
			if r.counts.Received != n*100 {
				t.Errorf("received %d, want %d", r.counts.Received, n*100)
			}
			s := readSides(t, r.port)
			atLeast(t, "client TIME_WAIT", uint64(s.client["TIME_WAIT"]), most)
		})

		t.Run("linger0", func(t *testing.T) {
			r := runScenario(t, Linger0, n, nil)
			r.settle(t, n)
			r.complete(t, n)
			atLeast(t, "target saw resets", r.tc.Reset, most)
			s := readSides(t, r.port)
			atMost(t, "TIME_WAIT on either side", uint64(s.client["TIME_WAIT"]+s.target["TIME_WAIT"]), few)
		})

		t.Run("unread-close", func(t *testing.T) {
			r := runScenario(t, UnreadClose, n, nil)
			r.settle(t, n)
			r.complete(t, n)
			atLeast(t, "client saw resets", r.counts.Reset, most)
			s := readSides(t, r.port)
			atMost(t, "TIME_WAIT on either side", uint64(s.client["TIME_WAIT"]+s.target["TIME_WAIT"]), few)
		})

		t.Run("orphan-finwait2", func(t *testing.T) {
			r := runScenario(t, OrphanFinWait2, n, func(c *Config, tc *TargetConfig) { tc.Hold = 300 * time.Millisecond })
			r.complete(t, n)
			// While the target holds, the client's closed sockets wait in
			// FIN_WAIT_2 without a descriptor.
			s := readSides(t, r.port)
			orphans := s.client["FIN_WAIT2"]
			r.settle(t, n)
			time.Sleep(400 * time.Millisecond)
			after := readSides(t, r.port)
			atLeast(t, "client FIN_WAIT2 during the hold", uint64(orphans), n/4)
			atLeast(t, "client TIME_WAIT after the target closed", uint64(after.client["TIME_WAIT"]), most)
			atMost(t, "client FIN_WAIT2 after", uint64(after.client["FIN_WAIT2"]), few)
		})

		t.Run("close-wait-leak ends its holds with the run", func(t *testing.T) {
			r := runScenario(t, CloseWaitLeak, n, func(c *Config, tc *TargetConfig) {
				c.Hold, tc.Hold = 3*time.Second, 3*time.Second
				c.Cycles, c.Duration = 0, 1500*time.Millisecond
			})
			// The run ended after 1.5 s, inside the 3 s hold: the connections
			// it still held were closed when it ended, not 3 s later.
			if r.counts.Cycles < 100 || r.counts.ErrorTotal() != 0 {
				t.Fatalf("cycles %d errors %v", r.counts.Cycles, r.counts.Errors)
			}
			if h := r.pool.Held(); h != 0 {
				t.Fatalf("client still holds %d connections after the run ended", h)
			}
		})

		t.Run("close-wait-leak piles up", func(t *testing.T) {
			// The hold outlasts the bounded wait below, so a slow machine
			// sees the pile-up before the target starts closing.
			tcfg := TargetConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Scenarios: []Scenario{CloseWaitLeak},
				Acceptors: 4, Hold: 30 * time.Second, Timeout: 5 * time.Second}
			target, err := StartTarget(tcfg)
			if err != nil {
				t.Fatal(err)
			}
			defer target.Close()
			pool, err := NewPool(Config{Mix: NewMix(CloseWaitLeak), Targets: target.Addrs(), Conns: 2, Cycles: 300,
				Duration: 20 * time.Second, Hold: 30 * time.Second, Timeout: 5 * time.Second}, collector.NewLatencySink(1))
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- pool.Run(context.Background()) }()
			port := target.Addrs()[0].Port()
			var s sideStates
			for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				s = readSides(t, port)
				if s.target["CLOSE_WAIT"] >= 290 {
					break
				}
			}
			atLeast(t, "target CLOSE_WAIT while it leaks", uint64(s.target["CLOSE_WAIT"]), 290)
			atLeast(t, "client FIN_WAIT2 (owned, half-closed)", uint64(s.client["FIN_WAIT2"]), 290)
			atLeast(t, "held by the target", uint64(target.Held()), 290)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})

		t.Run("stream-echo", func(t *testing.T) {
			const size = 300 << 10
			r := runScenario(t, StreamEcho, 40, func(c *Config, tc *TargetConfig) { c.RequestSize, tc.RequestSize = size, size })
			r.complete(t, 40)
			if r.counts.Verified != 40*size || r.counts.Sent != 40*size {
				t.Fatalf("sent %d verified %d, want %d each", r.counts.Sent, r.counts.Verified, 40*size)
			}
		})
	})
}
