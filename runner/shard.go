package runner

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/closeload/closeload/results"
)

// parseShard parses --shard i/N: shard i (from 0) of N cooperating
// processes or hosts that together make one run.
func parseShard(s string) (*results.Shard, error) {
	is, ns, ok := strings.Cut(s, "/")
	if !ok {
		return nil, usage("--shard %q: want INDEX/COUNT such as 0/4", s)
	}
	i, err1 := strconv.Atoi(strings.TrimSpace(is))
	n, err2 := strconv.Atoi(strings.TrimSpace(ns))
	if err1 != nil || err2 != nil || n < 1 || n > 10000 || i < 0 || i >= n {
		return nil, usage("--shard %q: want INDEX/COUNT with 0 <= INDEX < COUNT <= 10000", s)
	}
	return &results.Shard{Index: i, Count: n}, nil
}

// applyShard gives this shard its exact slice of the run: connections,
// rate and cycles are split floor((i+1)·C/N) − floor(i·C/N), so the slices
// of all shards add up to the whole. The record then holds the shard's own
// slice, which results.Merge sums back.
func applyShard(s *Spec, sh *results.Shard) error {
	conns := results.ShardSlice(s.Conns, sh.Index, sh.Count)
	if conns < 1 && s.Storm > 0 {
		conns = 1 // a storm has no workers: --storm is what is sliced
	}
	if conns < 1 {
		return usage("--shard %d/%d: --conns %d gives this shard no worker; use at least %d conns", sh.Index, sh.Count, s.Conns, sh.Count)
	}
	s.Conns = conns
	if s.Rate > 0 {
		if s.Rate == math.Trunc(s.Rate) && s.Rate < 1<<52 {
			s.Rate = float64(results.ShardSlice(int(s.Rate), sh.Index, sh.Count))
		} else {
			s.Rate /= float64(sh.Count)
		}
		if s.Rate <= 0 {
			return usage("--shard %d/%d: --rate gives this shard no connection; raise --rate", sh.Index, sh.Count)
		}
	}
	if s.Cycles > 0 {
		i, n := uint64(sh.Index), uint64(sh.Count)
		s.Cycles = (i+1)*s.Cycles/n - i*s.Cycles/n
		if s.Cycles == 0 {
			return usage("--shard %d/%d: --cycles gives this shard none; raise --cycles", sh.Index, sh.Count)
		}
	}
	return nil
}

// parseStartAt parses --start-at, the wall-clock time at which every shard
// starts its load, so that shards on several hosts overlap.
func parseStartAt(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, usage("--start-at %q: want an RFC 3339 time such as 2026-11-24T12:00:00Z", s)
	}
	return t, nil
}

// waitStart waits until t, or returns early when done closes. A start time
// already past starts at once and says so: the shards will not overlap.
func waitStart(t time.Time, done <-chan struct{}, warn func(string)) bool {
	d := time.Until(t)
	if d <= 0 {
		if d < -time.Second {
			warn(fmt.Sprintf("--start-at %s was %v ago; starting now, this shard will not overlap the others", t.Format(time.RFC3339), -d.Round(time.Millisecond)))
		}
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-done:
		return false
	}
}
