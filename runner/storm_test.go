package runner

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/closeload/closeload/internal/nstest"
	"github.com/closeload/closeload/results"
	"github.com/closeload/closeload/sysctl"
	"github.com/closeload/closeload/workload"
)

// withLimits runs f with the machine's limits replaced by lim.
func withLimits(t *testing.T, lim Limits) {
	t.Helper()
	old := limitsNow
	limitsNow = func(bool, []sysctl.Assignment) Limits { return lim }
	t.Cleanup(func() { limitsNow = old })
}

// here is this project's machine: 20,000 descriptors, the default port
// range, 24 GiB.
var here = Limits{Descriptors: 20000, DescriptorsHard: 20000, PortLow: 32768, PortHigh: 60999, MemAvailable: 23 << 30}

func closer(c workload.Closer) *workload.Closer { return &c }

func mix(t *testing.T, s string) workload.Mix {
	t.Helper()
	m, err := workload.ParseMix(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestValidateStorm(t *testing.T) {
	withLimits(t, here)
	out := filepath.Join(t.TempDir(), "r.json")
	ext := netip.MustParseAddrPort("127.0.0.1:9")
	storm := func(n int) *Storm { return &Storm{N: n} }
	for _, tc := range []struct {
		name string
		mod  func(*Plan)
		want string // substring of the usage error; "" = valid
		// check looks at a valid plan.
		check func(*testing.T, *Plan)
	}{
		{"default scenario becomes client-halfclose", func(p *Plan) { p.Storm = storm(1000) }, "", func(t *testing.T, p *Plan) {
			if p.Mix.Entries[0].Scenario != workload.ClientHalfClose || *p.Storm.Closer != workload.CloserClient || p.Procs != 1 || p.Storm.Mine != 1000 {
				t.Errorf("plan %+v procs %d", p.Storm, p.Procs)
			}
		}},
		{"scenario names the closer", func(p *Plan) { p.Storm, p.Mix = storm(1000), mix(t, "simultaneous") }, "", func(t *testing.T, p *Plan) {
			if *p.Storm.Closer != workload.CloserBoth {
				t.Errorf("closer %v", p.Storm.Closer)
			}
		}},
		{"closer alone picks the scenario", func(p *Plan) { p.Storm = &Storm{N: 1000, Closer: closer(workload.CloserServer)} }, "", func(t *testing.T, p *Plan) {
			if p.Mix.Entries[0].Scenario != workload.ServerHalfClose || *p.Storm.Closer != workload.CloserServer {
				t.Errorf("plan %+v", p.Storm)
			}
		}},
		{"close-wait-leak from the server", func(p *Plan) {
			p.Storm, p.Mix = &Storm{N: 1000, Closer: closer(workload.CloserServer)}, mix(t, "close-wait-leak")
		}, "", nil},
		{"closer contradicts scenario", func(p *Plan) {
			p.Storm, p.Mix = &Storm{N: 1000, Closer: closer(workload.CloserClient)}, mix(t, "server-halfclose")
		}, "Storm.Closer client contradicts Mix server-halfclose", nil},
		{"leak both ways", func(p *Plan) {
			p.Storm, p.Mix = &Storm{N: 1000, Closer: closer(workload.CloserBoth)}, mix(t, "close-wait-leak")
		}, "Storm.Closer both", nil},
		{"mix", func(p *Plan) { p.Storm, p.Mix = storm(1000), mix(t, "client-halfclose,linger0") }, "a storm plays one scenario", nil},
		{"scenario a storm cannot play", func(p *Plan) { p.Storm, p.Mix = storm(1000), mix(t, "linger0") }, "a storm plays client-halfclose", nil},
		{"server closer needs built-in target", func(p *Plan) {
			p.Storm, p.Mix, p.Target = storm(1000), mix(t, "server-halfclose"), ext
		}, "needs the built-in target", nil},
		{"negative window", func(p *Plan) { p.Storm = &Storm{N: 1000, Window: -time.Second} }, "Storm.Window", nil},
		{"duration with storm", func(p *Plan) { p.Storm, p.Duration = storm(1000), time.Second }, "Duration 1s with Storm", nil},
		{"bad procs", func(p *Plan) { p.Procs = -5 }, "Procs -5", nil},
		{"hlog with storm", func(p *Plan) { p.Storm, p.Hlog = storm(1000), filepath.Join(filepath.Dir(out), "h.hlog") }, "Hlog", nil},
		{"descriptors bind", func(p *Plan) { p.Storm = storm(250000) }, "descriptors bind", nil},
		{"descriptors bind with too few procs", func(p *Plan) { p.Storm, p.Procs = storm(250000), 4 }, "use Procs 27 (or auto)", nil},
		{"auto procs", func(p *Plan) { p.Storm, p.Procs = storm(250000), ProcsAuto }, "", func(t *testing.T, p *Plan) {
			if p.Procs != 27 {
				t.Errorf("auto gave %d processes, want 27", p.Procs)
			}
			if fdsPerProc(250000, p.Procs, true) > 20000 || fdsPerProc(250000, p.Procs-1, true) <= 20000 {
				t.Errorf("%d processes is not the fewest that fit", p.Procs)
			}
		}},
		{"external target needs one descriptor each", func(p *Plan) { p.Storm, p.Procs, p.Target = storm(30000), ProcsAuto, ext }, "", func(t *testing.T, p *Plan) {
			if p.Procs != 2 {
				t.Errorf("auto gave %d processes, want 2", p.Procs)
			}
		}},
		{"ports bind", func(p *Plan) {
			p.Storm, p.Procs, p.Sources = storm(40000), ProcsAuto, []netip.Addr{netip.MustParseAddr("127.0.0.2")}
		}, "local ports bind: 1 source address(es) × 28232 ports", nil},
		{"memory binds", func(p *Plan) { p.Storm, p.Procs = storm(2_000_000), ProcsAuto }, "memory binds", nil},
		{"shard takes its slice", func(p *Plan) { p.Storm, p.Shard = storm(10), &results.Shard{Index: 1, Count: 3} }, "", func(t *testing.T, p *Plan) {
			if p.Storm.Mine != 3 || p.Storm.N != 10 || p.Procs != 1 {
				t.Errorf("shard 1/3 of 10: mine %d n %d procs %d", p.Storm.Mine, p.Storm.N, p.Procs)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := DefaultPlan()
			p.Duration = 0
			p.Out = out
			tc.mod(&p)
			if p.Storm == nil && p.Duration == 0 {
				p.Duration = time.Second
			}
			err := p.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if tc.check != nil {
					tc.check(t, &p)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want a usage error containing %q", err, tc.want)
			}
		})
	}
}

// TestStormLimitMessage pins what the refusal of a 250k storm without
// several processes says: the binding limit, its value and how to lift it.
func TestStormLimitMessage(t *testing.T) {
	withLimits(t, here)
	p := DefaultPlan()
	p.Duration = 0
	p.Out = filepath.Join(t.TempDir(), "r.json")
	p.Storm = &Storm{N: 250000}
	err := p.Validate()
	for _, want := range []string{"descriptors bind", "RLIMIT_NOFILE is 20000", "Procs 27", "2 per connection with the built-in target"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v: want %q in it", err, want)
		}
	}
}

func stormPlan(t *testing.T, n int) Plan {
	p := DefaultPlan()
	p.Duration = 0
	p.Storm = &Storm{N: n, Window: 100 * time.Millisecond}
	p.Hold = 300 * time.Millisecond
	p.Interval = 100 * time.Millisecond
	p.Netns = NetnsHost // the test is in a namespace of its own already
	p.Out = filepath.Join(t.TempDir(), "storm.json")
	p.Args = []string{"run", "--storm=2000"}
	return p
}

func checkStorm(t *testing.T, r *results.Run, n int) {
	t.Helper()
	st := r.Storm
	if st == nil {
		t.Fatal("no storm in the record")
	}
	if st.Opened != uint64(n) || st.Closed+st.Failed != st.Opened || st.Unaccounted != 0 || st.HoldPeak != uint64(n) {
		t.Errorf("storm %+v, want %d opened, all accounted", st, n)
	}
	if st.Closed < uint64(n)*99/100 {
		t.Errorf("only %d of %d closed in EOF", st.Closed, n)
	}
	if st.TimeToLastClose <= 0 {
		t.Errorf("time to last close %d", st.TimeToLastClose)
	}
	sc := r.Scenarios[0]
	if sc.Phases["drain"].Count != int64(st.Closed) || sc.Phases["connect"].Count != int64(n) {
		t.Errorf("phases: drain %d connect %d", sc.Phases["drain"].Count, sc.Phases["connect"].Count)
	}
	if sc.Target == nil || sc.Target.Accepted != uint64(n) {
		t.Errorf("target side %+v", sc.Target)
	}
	var held uint64
	for _, smp := range r.Series {
		held = max(held, smp.Held)
	}
	if held != uint64(n) {
		t.Errorf("series held at most %d, want %d", held, n)
	}
	if r.Peaks["ESTABLISHED"].Total < uint64(n) {
		t.Errorf("ESTABLISHED peak %d, want both ends of %d connections", r.Peaks["ESTABLISHED"].Total, n)
	}
}

func TestStormRun(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		p := stormPlan(t, 2000)
		r, err := Run(context.Background(), &p, Output{})
		if err != nil {
			t.Fatal(err)
		}
		checkStorm(t, r, 2000)
		if r.Config.Shape != "storm" || r.Config.Storm != 2000 || r.Config.Closer != "client" {
			t.Errorf("config %+v", r.Config)
		}
		back, err := results.ReadFile(p.Out)
		if err != nil || back.Storm == nil || back.Storm.Opened != 2000 {
			t.Errorf("record on disk: %v %+v", err, back)
		}
	})
}

// TestProcsRun runs a storm as two processes end to end: two shard
// children of this test binary (its TestMain serves them) share the
// built-in target's port; the merged record is the sum of the shards, and
// a shard that fails is reported missing, its share unaccounted.
func TestProcsRun(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		t.Run("merged", func(t *testing.T) {
			p := stormPlan(t, 2000)
			p.Procs = 2
			r, err := Run(context.Background(), &p, Output{})
			if err != nil {
				t.Fatal(err)
			}
			checkStorm(t, r, 2000)
			if r.Config.Procs != 2 || r.Shard != nil || r.Interrupted {
				t.Errorf("merged record: procs %d shard %v interrupted %v %s", r.Config.Procs, r.Shard, r.Interrupted, r.InterruptReason)
			}
			var opened, closed, accepted uint64
			for i := range 2 {
				sh, err := results.ReadFile(filepath.Join(ShardDir(p.Out), "shard-"+string(rune('0'+i))+".json"))
				if err != nil {
					t.Fatal(err)
				}
				if sh.Shard == nil || sh.Shard.Index != i || sh.Storm.Opened != uint64(results.ShardSlice(2000, i, 2)) {
					t.Errorf("shard %d: %+v %+v", i, sh.Shard, sh.Storm)
				}
				opened += sh.Storm.Opened
				closed += sh.Storm.Closed
				accepted += sh.Scenarios[0].Target.Accepted
			}
			if opened != r.Storm.Opened || closed != r.Storm.Closed || accepted != r.Scenarios[0].Target.Accepted {
				t.Errorf("merged %+v is not the sum of its shards (opened %d closed %d accepted %d)", r.Storm, opened, closed, accepted)
			}
		})

		t.Run("missing shard", func(t *testing.T) {
			t.Setenv(failShardEnv, "1")
			p := stormPlan(t, 1000)
			p.Procs = 2
			r, err := Run(context.Background(), &p, Output{})
			if err == nil || !strings.Contains(err.Error(), "shard 1/2") {
				t.Errorf("error %v, want shard 1/2 named", err)
			}
			if r == nil {
				t.Fatal("no merged record")
			}
			if !r.Interrupted || !strings.Contains(r.InterruptReason, "shard 1/2 missing") {
				t.Errorf("interrupted %v reason %q", r.Interrupted, r.InterruptReason)
			}
			if r.Storm.Opened != 500 || r.Storm.Unaccounted != 500 || r.Config.Storm != 1000 {
				t.Errorf("storm %+v config storm %d: want shard 0's 500 and shard 1's 500 unaccounted", r.Storm, r.Config.Storm)
			}
			if r.Verdict == nil || r.Verdict.Status != results.VerdictFailed || ExitCode(r, err) != ExitFailed {
				t.Errorf("verdict %+v, exit %d: a failed shard fails the run", r.Verdict, ExitCode(r, err))
			}
		})
	})
}
