package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/closeload/closeload/internal/binarytest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/closeload/closeload/internal/nstest"
	"github.com/closeload/closeload/report"
	"github.com/closeload/closeload/results"
)

// The test network: a target "host" with a bridge, and agent "hosts" with a
// veth each into it. Addresses exist only inside the namespaces the test
// makes; nothing is created in the host's own namespace.
const (
	targetAddr = "10.77.0.1"
	targetPort = "9000"
	agents     = 2
	// totalCycles is the whole run's --cycles; each agent takes its exact
	// slice (1000 each).
	totalCycles = 2000
	scenario    = "client-halfclose"
)

func agentAddr(i int) string { return fmt.Sprintf("10.77.0.%d", 2+i) }

// needNetns skips (or fails, under CLOSELOAD_REQUIRE_NETNS=1) when named
// namespaces cannot be made here.
func needNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		nstest.Unavailable(t, "named network namespaces (ip netns add) need root")
	}
	for _, tool := range []string{"ip", "unshare", "hostname"} {
		if _, err := exec.LookPath(tool); err != nil {
			nstest.Unavailable(t, tool+" is not installed (iproute2, util-linux, hostname)")
		}
	}
}

// sh runs one setup command, bounded; the test fails on error.
func sh(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// addNetns makes a named namespace with loopback up and deletes it at
// cleanup, which also destroys every interface in it.
func addNetns(t *testing.T, name string) {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		nstest.Unavailable(t, fmt.Sprintf("ip netns add: %v: %s", err, bytes.TrimSpace(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	sh(t, "ip", "-n", name, "link", "set", "lo", "up")
}

// network makes the target namespace (a bridge holding targetAddr/24) and
// one namespace per agent, joined to the bridge by a veth pair created
// directly in the two namespaces. It returns the namespaces' names.
func network(t *testing.T) (target string, agentNS []string) {
	t.Helper()
	prefix := fmt.Sprintf("cl-mh-%d", os.Getpid())
	target = prefix + "-t"
	addNetns(t, target)
	sh(t, "ip", "-n", target, "link", "add", "br0", "type", "bridge")
	sh(t, "ip", "-n", target, "addr", "add", targetAddr+"/24", "dev", "br0")
	sh(t, "ip", "-n", target, "link", "set", "br0", "up")
	for i := range agents {
		ns := fmt.Sprintf("%s-a%d", prefix, i)
		addNetns(t, ns)
		port := fmt.Sprintf("a%d", i)
		sh(t, "ip", "link", "add", port, "netns", target, "type", "veth", "peer", "name", "eth0", "netns", ns)
		sh(t, "ip", "-n", target, "link", "set", port, "master", "br0", "up")
		sh(t, "ip", "-n", ns, "addr", "add", agentAddr(i)+"/24", "dev", "eth0")
		sh(t, "ip", "-n", ns, "link", "set", "eth0", "up")
		agentNS = append(agentNS, ns)
	}
	return target, agentNS
}

// inHost returns the command that runs closeload in namespace ns as a host
// of its own: its own network and its own host name (records name their
// host, and kernel counters of different hosts add up in a merge). ip netns
// exec, unshare and sh each exec the next, so the PID is closeload's.
func inHost(ctx context.Context, ns, hostname, bin string, args ...string) *exec.Cmd {
	script := `hostname "$1" && shift && exec "$@"`
	full := append([]string{"netns", "exec", ns, "unshare", "--uts", "--", "sh", "-c", script, "sh", hostname, bin}, args...)
	return exec.CommandContext(ctx, "ip", full...)
}

// serve runs `closeload serve` in the target namespace until stop, which
// sends SIGINT (to its PID) and returns what it printed. Cleanup kills it
// if the test ends first.
func serve(t *testing.T, ns, bin string) (stop func() string) {
	t.Helper()
	_, stop = binarytest.Serve(t, inHost(context.Background(), ns, "target", bin, "serve", "--listen", targetAddr+":"+targetPort, "--scenario", scenario))
	return stop
}

// served parses serve's closing line for the scenario.
func served(t *testing.T, out string) (accepted, completed, errs uint64) {
	t.Helper()
	re := regexp.MustCompile(regexp.QuoteMeta(scenario) + `: accepted (\d+), completed (\d+), errors (\d+)`)
	m := re.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("serve printed no counts:\n%s", out)
	}
	n := func(s string) uint64 { v, _ := strconv.ParseUint(s, 10, 64); return v }
	return n(m[1]), n(m[2]), n(m[3])
}

// reportJSON runs `closeload report --format json` on dir.
func reportJSON(t *testing.T, bin, dir string) report.Comparison {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "report", "--format", "json", dir)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("closeload report: %v\n%s", err, stderr.String())
	}
	var c report.Comparison
	if err := json.Unmarshal(stdout.Bytes(), &c); err != nil {
		t.Fatalf("report JSON: %v", err)
	}
	return c
}

func histCount(t *testing.T, p results.Phase) int64 {
	t.Helper()
	h, err := results.DecodeHistogram(p.Histogram)
	if err != nil {
		t.Fatal(err)
	}
	return h.TotalCount()
}

// TestMultiHostShards runs one sharded run across "hosts" made of network
// namespaces: a target namespace running `closeload serve`, two agent
// namespaces each running `closeload run --shard i/2` with the same
// --start-at and --run-id, joined by a bridge. The merged record must be the
// sum of its shards (cycles, attempts, bytes, latency histograms,
// per-namespace kernel counters) and match what the target served; with
// one shard's record absent, the merge and the report name it missing.
func TestMultiHostShards(t *testing.T) {
	if testing.Short() {
		t.Skip("builds closeload and runs a sharded load across namespaces")
	}
	needNetns(t)
	bin := binarytest.Closeload(t)
	targetNS, agentNS := network(t)
	stopServe := serve(t, targetNS, bin)

	dir := t.TempDir()
	runID := fmt.Sprintf("multihost-%d", os.Getpid())
	startAt := time.Now().Add(2 * time.Second).UTC().Truncate(time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	type agentRun struct {
		cmd *exec.Cmd
		out bytes.Buffer
		err error
	}
	runs := make([]*agentRun, agents)
	var wg sync.WaitGroup
	for i, ns := range agentNS {
		r := &agentRun{}
		r.cmd = inHost(ctx, ns, fmt.Sprintf("agent-%d", i), bin, "run",
			"--target", targetAddr+":"+targetPort, "--scenario", scenario,
			"--shard", fmt.Sprintf("%d/%d", i, agents), "--start-at", startAt.Format(time.RFC3339Nano),
			"--run-id", runID, "--cycles", strconv.Itoa(totalCycles), "--duration", "30s",
			"--out", filepath.Join(dir, fmt.Sprintf("shard-%d.json", i)))
		r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
		r.cmd.WaitDelay = 5 * time.Second
		runs[i] = r
		wg.Add(1)
		go func() { defer wg.Done(); r.err = r.cmd.Run() }()
	}
	wg.Wait()
	servedOut := stopServe()
	for i, r := range runs {
		if r.err != nil {
			t.Fatalf("agent %d: %v\n%s", i, r.err, r.out.String())
		}
	}

	recs := make([]*results.Run, agents)
	var sum results.Totals
	phaseCounts := map[string]int64{}
	minOf, maxOf := map[string]int64{}, map[string]int64{}
	counters := map[string]int64{}
	for i := range agents {
		r, err := results.ReadFile(filepath.Join(dir, fmt.Sprintf("shard-%d.json", i)))
		if err != nil {
			t.Fatal(err)
		}
		recs[i] = r
		slice := uint64(results.ShardSlice(totalCycles, i, agents))
		if r.ID != runID || r.Shard == nil || *r.Shard != (results.Shard{Index: i, Count: agents}) {
			t.Fatalf("shard %d: id %q shard %+v", i, r.ID, r.Shard)
		}
		if r.Provenance.Hostname != fmt.Sprintf("agent-%d", i) {
			t.Errorf("shard %d ran on host %q", i, r.Provenance.Hostname)
		}
		if r.Totals.Cycles != slice || r.Totals.Attempts != slice || r.Config.Cycles != slice || len(r.Totals.Errors) != 0 {
			t.Fatalf("shard %d: %d cycles, %d attempts of --cycles %d, errors %v; want its slice %d, no errors",
				i, r.Totals.Cycles, r.Totals.Attempts, r.Config.Cycles, r.Totals.Errors, slice)
		}
		if !r.Config.StartAt.Equal(startAt) || r.Start.Before(startAt) {
			t.Errorf("shard %d: start_at %v, load started %v: want %v, not before", i, r.Config.StartAt, r.Start, startAt)
		}
		sum.Cycles += r.Totals.Cycles
		sum.Attempts += r.Totals.Attempts
		sum.Bytes.Sent += r.Totals.Bytes.Sent
		sum.Bytes.Received += r.Totals.Bytes.Received
		for _, sc := range r.Scenarios {
			for name, p := range sc.Phases {
				if c := histCount(t, p); c != p.Count {
					t.Fatalf("shard %d %s: histogram holds %d, summary says %d", i, name, c, p.Count)
				}
				phaseCounts[name] += p.Count
				if v, ok := minOf[name]; !ok || p.Min < v {
					minOf[name] = p.Min
				}
				maxOf[name] = max(maxOf[name], p.Max)
			}
		}
		for _, c := range r.Counters {
			if c.Scope != "global" {
				counters[c.Name] += c.Delta
			}
		}
	}

	t.Run("merged equals the sum", func(t *testing.T) {
		merged, missing, err := results.Merge(recs)
		if err != nil {
			t.Fatal(err)
		}
		if len(missing) != 0 {
			t.Fatalf("missing %v with every shard present", missing)
		}
		if merged.Totals.Cycles != totalCycles || merged.Totals.Cycles != sum.Cycles || merged.Totals.Attempts != sum.Attempts ||
			merged.Config.Cycles != totalCycles || merged.Totals.Bytes.Sent != sum.Bytes.Sent || merged.Totals.Bytes.Received != sum.Bytes.Received {
			t.Fatalf("merged totals %+v, config cycles %d; want the sum %+v and %d", merged.Totals, merged.Config.Cycles, sum, totalCycles)
		}
		if len(merged.Scenarios) != 1 {
			t.Fatalf("merged %d scenarios", len(merged.Scenarios))
		}
		if len(merged.Scenarios[0].Phases) == 0 {
			t.Fatal("merged record has no latency phases")
		}
		for name, p := range merged.Scenarios[0].Phases {
			if c := histCount(t, p); c != phaseCounts[name] || p.Count != phaseCounts[name] {
				t.Errorf("phase %s: merged histogram holds %d (summary %d), shards %d", name, c, p.Count, phaseCounts[name])
			}
			if p.Min != minOf[name] || p.Max != maxOf[name] {
				t.Errorf("phase %s: merged min/max %d/%d, shards' %d/%d", name, p.Min, p.Max, minOf[name], maxOf[name])
			}
		}
		if len(counters) == 0 {
			t.Fatal("shards recorded no kernel counters")
		}
		for _, c := range merged.Counters {
			if c.Scope == "global" {
				continue // one kernel here: the test's "hosts" share it
			}
			if c.Delta != counters[c.Name] {
				t.Errorf("counter %s: merged %d, shards sum %d", c.Name, c.Delta, counters[c.Name])
			}
		}
		// The agents' kernels opened the connections, and half-closing
		// first left them in TIME_WAIT on the agents: ranges, as kernel
		// counts go (the probe each run makes comes before its window).
		for _, name := range []string{"Tcp.ActiveOpens", "Sockstat.TCP.tw"} {
			v, ok := counters[name]
			if !ok || v < totalCycles-agents || v > totalCycles+2*agents {
				t.Errorf("%s over the agents: %d (recorded: %v), want %d to %d", name, v, ok, totalCycles-agents, totalCycles+2*agents)
			}
		}
		t.Logf("merged %d shards: %d cycles, %d attempts, bytes %+v, ActiveOpens %d, TIME_WAIT %d",
			agents, merged.Totals.Cycles, merged.Totals.Attempts, merged.Totals.Bytes, counters["Tcp.ActiveOpens"], counters["Sockstat.TCP.tw"])
		if merged.Provenance.Hostname != "agent-0,agent-1" {
			t.Errorf("merged hosts %q", merged.Provenance.Hostname)
		}
	})

	t.Run("target saw the sum", func(t *testing.T) {
		accepted, completed, errs := served(t, servedOut)
		t.Logf("target: accepted %d, completed %d, errors %d", accepted, completed, errs)
		// Each agent's run makes one probe connection before its load.
		if accepted != totalCycles+agents || completed+errs != accepted || completed < totalCycles {
			t.Fatalf("target accepted %d, completed %d, errors %d; want %d accepted (%d cycles + %d probes), all ended",
				accepted, completed, errs, totalCycles+agents, totalCycles, agents)
		}
	})

	t.Run("report merges the run", func(t *testing.T) {
		c := reportJSON(t, bin, dir)
		if len(c.Variants) != 1 || len(c.Variants[0].Runs) != 1 {
			t.Fatalf("report: %d variants, want one run of one variant", len(c.Variants))
		}
		r := c.Variants[0].Runs[0]
		if r.ID != runID || r.Shards != agents || len(r.Missing) != 0 || len(r.Paths) != agents {
			t.Fatalf("report run %+v: want %s, %d shards from %d files, none missing", r, runID, agents, agents)
		}
		for _, n := range c.Notes {
			if strings.Contains(n, "missing") {
				t.Errorf("note: %s", n)
			}
		}
	})

	t.Run("missing shard flagged", func(t *testing.T) {
		_, missing, err := results.Merge(recs[:1])
		if err != nil {
			t.Fatal(err)
		}
		want := results.MissingShard{RunID: runID, Index: 1, Count: agents}
		if len(missing) != 1 || missing[0] != want {
			t.Fatalf("merge of shard 0 alone: missing %v, want %v", missing, want)
		}
		part := t.TempDir()
		b, err := os.ReadFile(filepath.Join(dir, "shard-0.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(part, "shard-0.json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		c := reportJSON(t, bin, part)
		if len(c.Variants) != 1 || len(c.Variants[0].Runs) != 1 {
			t.Fatalf("report: %d variants", len(c.Variants))
		}
		r := c.Variants[0].Runs[0]
		if r.Shards != agents || len(r.Missing) != 1 || r.Missing[0] != want {
			t.Fatalf("report run %+v: want shard 1/%d missing", r, agents)
		}
		flagged := false
		for _, n := range c.Notes {
			flagged = flagged || strings.Contains(n, want.String())
		}
		if !flagged {
			t.Errorf("no note says %q: %q", want.String(), c.Notes)
		}
	})
}
