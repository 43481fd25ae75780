package verify

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strings"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/kernel"
	"github.com/closeload/closeload/sysctl"
)

// Env is what an experiment may use: the /proc it observes, the permission
// to change sysctls (only inside a namespace made for it) and a way to start
// helper processes in the same namespace.
type Env struct {
	// ProcRoot is where /proc is mounted ("" means /proc).
	ProcRoot string
	// Isolated is true only when this process runs in a network namespace
	// created for this experiment; Set refuses to write sysctls otherwise.
	Isolated bool
	// Helper returns a command that runs the named helper (see helpers.go)
	// in this process's network namespace; nil when helpers are unavailable.
	Helper func(ctx context.Context, name string, args ...string) *exec.Cmd
}

func (e *Env) procRoot() string {
	if e.ProcRoot == "" {
		return sysctl.DefaultProcRoot
	}
	return e.ProcRoot
}

// Set writes sysctls of this namespace, each given as "key=value"
// (net.ipv4.tcp_fin_timeout=2). It refuses unless the experiment runs in a
// namespace of its own: the host's settings are never touched.
func (e *Env) Set(specs ...string) error {
	if !e.Isolated {
		return ErrNotIsolated
	}
	as, err := sysctl.ParseAssignments(specs, true)
	if err != nil {
		return err
	}
	return sysctl.Apply(e.procRoot(), as)
}

// Get reads one sysctl of this namespace.
func (e *Env) Get(key string) (string, error) { return sysctl.Read(e.procRoot(), key) }

// Sockets returns every TCP socket of this namespace (IPv4 and IPv6 rows).
func (e *Env) Sockets() ([]Socket, error) {
	var all []Socket
	fs := kernel.NewFS(e.procRoot())
	for _, ipv6 := range []bool{false, true} {
		f, err := fs.NetTCP(ipv6)
		if err != nil {
			if ipv6 && errors.Is(err, kernel.ErrNotExist) {
				continue // kernel without IPv6
			}
			return nil, err
		}
		s, err := ParseProcNetTCP(f)
		f.Close()
		if err != nil {
			return nil, err
		}
		all = append(all, s...)
	}
	return all, nil
}

// States counts the namespace's sockets by state among those keep accepts
// (all when keep is nil); orphans are counted again under "STATE/orphan".
func (e *Env) States(keep func(Socket) bool) (map[string]int, error) {
	socks, err := e.Sockets()
	if err != nil {
		return nil, err
	}
	return countStates(socks, keep), nil
}

func countStates(socks []Socket, keep func(Socket) bool) map[string]int {
	m := map[string]int{}
	for _, s := range socks {
		if keep != nil && !keep(s) {
			continue
		}
		m[s.State]++
		if s.Orphaned() {
			m[s.State+"/orphan"]++
		}
	}
	return m
}

// fmtStates renders a state count compactly and deterministically:
// "FIN_WAIT2=20 (20 orphaned), TIME_WAIT=3" or "none".
func fmtStates(m map[string]int) string {
	var keys []string
	for k := range m {
		if !strings.HasSuffix(k, "/orphan") && m[k] > 0 {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return "none"
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
		if o := m[k+"/orphan"]; o > 0 && k != "TIME_WAIT" {
			parts[i] += fmt.Sprintf(" (%d orphaned)", o)
		}
	}
	return strings.Join(parts, ", ")
}

// Counters reads the namespace's kernel counters, keyed "TcpExt.TWRecycled",
// "Tcp.OutRsts", "Sockstat.TCP.tw".
func (e *Env) Counters() (map[string]int64, error) { return collector.ReadCounters(e.procRoot()) }

// snapshot is a set of counters taken at one moment, for deltas.
type snapshot map[string]int64

// takeCounters reads the counters, returning an error the experiment reports.
func (e *Env) takeCounters() (snapshot, error) {
	m, err := e.Counters()
	if err != nil {
		return nil, fmt.Errorf("read kernel counters: %w", err)
	}
	return snapshot(m), nil
}

// delta returns after[name] - before[name].
func delta(before, after snapshot, name string) int64 { return after[name] - before[name] }
