package runner

import (
	"context"
	"errors"
	"github.com/closeload/closeload/internal/binarytest"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/closeload/closeload/internal/nstest"
	"github.com/closeload/closeload/results"
	"github.com/closeload/closeload/workload"
)

// withLimits runs f with the machine's limits replaced by lim.
func withLimits(t *testing.T, lim Limits) {
	t.Helper()
	old := limitsNow
	limitsNow = func(bool, []string) Limits { return lim }
	t.Cleanup(func() { limitsNow = old })
}

// here is the machine of DESIGN.md: 20,000 descriptors, the default port
// range, 24 GiB.
var here = Limits{Descriptors: 20000, DescriptorsHard: 20000, PortLow: 32768, PortHigh: 60999, MemAvailable: 23 << 30}

func TestValidateStorm(t *testing.T) {
	withLimits(t, here)
	out := filepath.Join(t.TempDir(), "r.json")
	for _, tc := range []struct {
		name string
		mod  func(*Spec)
		want string // substring of the usage error; "" = valid
		// check looks at a valid plan.
		check func(*testing.T, *Plan)
	}{
		{"default scenario becomes client-halfclose", func(s *Spec) { s.Storm = 1000 }, "", func(t *testing.T, p *Plan) {
			if p.Storm.Scenario != workload.ClientHalfClose || p.Storm.Closer != workload.CloserClient || p.Procs != 1 || p.Storm.N != 1000 {
				t.Errorf("plan %+v procs %d", p.Storm, p.Procs)
			}
		}},
		{"scenario names the closer", func(s *Spec) { s.Storm, s.Scenario = 1000, "simultaneous" }, "", func(t *testing.T, p *Plan) {
			if p.Storm.Closer != workload.CloserBoth {
				t.Errorf("closer %v", p.Storm.Closer)
			}
		}},
		{"closer alone picks the scenario", func(s *Spec) { s.Storm, s.Closer = 1000, "server" }, "", func(t *testing.T, p *Plan) {
			if p.Storm.Scenario != workload.ServerHalfClose || p.Storm.Closer != workload.CloserServer {
				t.Errorf("plan %+v", p.Storm)
			}
		}},
		{"close-wait-leak from the server", func(s *Spec) { s.Storm, s.Scenario, s.Closer = 1000, "close-wait-leak", "server" }, "", nil},
		{"closer contradicts scenario", func(s *Spec) { s.Storm, s.Scenario, s.Closer = 1000, "server-halfclose", "client" }, "--closer client contradicts --scenario server-halfclose", nil},
		{"leak both ways", func(s *Spec) { s.Storm, s.Scenario, s.Closer = 1000, "close-wait-leak", "both" }, "--closer both", nil},
		{"bad closer", func(s *Spec) { s.Storm, s.Closer = 1000, "peer" }, "want client, server or both", nil},
		{"closer without storm", func(s *Spec) { s.Closer = "server" }, "--closer needs --storm", nil},
		{"mix", func(s *Spec) { s.Storm, s.Scenario = 1000, "client-halfclose,linger0" }, "a storm plays one scenario", nil},
		{"scenario a storm cannot play", func(s *Spec) { s.Storm, s.Scenario = 1000, "linger0" }, "a storm plays client-halfclose", nil},
		{"server closer needs built-in target", func(s *Spec) { s.Storm, s.Scenario, s.Target = 1000, "server-halfclose", "127.0.0.1:9" }, "needs the built-in target", nil},
		{"negative window", func(s *Spec) { s.Storm, s.StormWindow = 1000, -time.Second }, "--storm-window", nil},
		{"bad close-at", func(s *Spec) { s.Storm, s.StormCloseAt = 1000, "tomorrow" }, "--storm-close-at", nil},
		{"bad procs", func(s *Spec) { s.Procs = "many" }, "--procs \"many\"", nil},
		{"hlog with storm", func(s *Spec) { s.Storm, s.Hlog = 1000, filepath.Join(filepath.Dir(out), "h.hlog") }, "--hlog", nil},
		{"descriptors bind", func(s *Spec) { s.Storm = 250000 }, "descriptors bind", nil},
		{"descriptors bind with too few procs", func(s *Spec) { s.Storm, s.Procs = 250000, "4" }, "use --procs 27 (or --procs auto)", nil},
		{"auto procs", func(s *Spec) { s.Storm, s.Procs = 250000, "auto" }, "", func(t *testing.T, p *Plan) {
			if p.Procs != 27 {
				t.Errorf("auto gave %d processes, want 27", p.Procs)
			}
			if fdsPerProc(250000, p.Procs, true) > 20000 || fdsPerProc(250000, p.Procs-1, true) <= 20000 {
				t.Errorf("%d processes is not the fewest that fit", p.Procs)
			}
		}},
		{"external target needs one descriptor each", func(s *Spec) { s.Storm, s.Procs, s.Target = 30000, "auto", "127.0.0.1:9" }, "", func(t *testing.T, p *Plan) {
			if p.Procs != 2 {
				t.Errorf("auto gave %d processes, want 2", p.Procs)
			}
		}},
		{"ports bind", func(s *Spec) { s.Storm, s.Procs, s.Source = 40000, "auto", "127.0.0.2" }, "local ports bind: 1 source address(es) × 28232 ports", nil},
		{"memory binds", func(s *Spec) { s.Storm, s.Procs = 2_000_000, "auto" }, "memory binds", nil},
		{"shard takes its slice", func(s *Spec) { s.Storm, s.Shard = 10, "1/3" }, "", func(t *testing.T, p *Plan) {
			if p.Storm.N != 3 || p.Storm.Total != 10 || p.Procs != 1 {
				t.Errorf("shard 1/3 of 10: n %d total %d procs %d", p.Storm.N, p.Storm.Total, p.Procs)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := DefaultSpec()
			s.Out = out
			tc.mod(&s)
			p, err := s.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if tc.check != nil {
					tc.check(t, p)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want a usage error containing %q", err, tc.want)
			}
		})
	}
}

// TestStormLimitMessage pins what the refusal of the goal without
// --procs says: the binding limit, its value and how to lift it.
func TestStormLimitMessage(t *testing.T) {
	withLimits(t, here)
	s := DefaultSpec()
	s.Out = filepath.Join(t.TempDir(), "r.json")
	s.Storm = 250000
	_, err := s.Validate()
	for _, want := range []string{"descriptors bind", "RLIMIT_NOFILE is 20000", "--procs 27", "2 per connection with the built-in target"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v: want %q in it", err, want)
		}
	}
}

func stormSpec(t *testing.T, n int) Spec {
	s := DefaultSpec()
	s.Storm = n
	s.Hold = 300 * time.Millisecond
	s.StormWindow = 100 * time.Millisecond
	s.Interval = 100 * time.Millisecond
	s.Out = filepath.Join(t.TempDir(), "storm.json")
	s.Args = []string{"run", "--storm=2000"}
	return s
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
		s := stormSpec(t, 2000)
		p, err := s.Validate()
		if err != nil {
			t.Fatal(err)
		}
		r, err := Run(context.Background(), p, Output{Stdout: io.Discard, Stderr: io.Discard})
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

// TestProcsRun runs `--procs 2` end to end with the real binary: two shard
// processes share the built-in target's port; the merged record is the sum
// of the shards, and a shard that fails is reported missing, its share
// unaccounted.
func TestProcsRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds closeload")
	}
	nstest.Run(t, func(t *testing.T) {
		bin := binarytest.Closeload(t)
		old := procsExe
		t.Cleanup(func() { procsExe = old })

		t.Run("merged", func(t *testing.T) {
			procsExe = func() (string, error) { return bin, nil }
			s := stormSpec(t, 2000)
			s.Procs = "2"
			s.Args = []string{"run", "--storm=2000", "--procs=2", "--hold=300ms", "--storm-window=100ms", "--interval=100ms"}
			p, err := s.Validate()
			if err != nil {
				t.Fatal(err)
			}
			r, err := Run(context.Background(), p, Output{Stdout: io.Discard, Stderr: io.Discard})
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
			dir := t.TempDir()
			wrapper := filepath.Join(dir, "closeload")
			script := "#!/bin/sh\ncase \"$*\" in *--shard=1/2*) echo 'shard 1 fails on purpose' >&2; exit 1;; esac\nexec " + bin + " \"$@\"\n"
			if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			procsExe = func() (string, error) { return wrapper, nil }
			s := stormSpec(t, 1000)
			s.Procs = "2"
			s.Args = []string{"run", "--storm=1000", "--procs=2", "--hold=200ms"}
			p, err := s.Validate()
			if err != nil {
				t.Fatal(err)
			}
			r, err := Run(context.Background(), p, Output{Stdout: io.Discard, Stderr: io.Discard})
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
		})
	})
}

func TestDroppedNoteRoundTrip(t *testing.T) {
	if got := droppedOf(droppedNote(12345)); got != 12345 {
		t.Errorf("droppedOf(droppedNote(12345)) = %d", got)
	}
	if got := droppedOf("something else"); got != 0 {
		t.Errorf("droppedOf(other) = %d", got)
	}
}
