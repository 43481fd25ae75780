package runner

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/closeload/closeload/results"
)

// ErrShardSyntax marks a shard that is not INDEX/COUNT.
var ErrShardSyntax = errors.New("want INDEX/COUNT such as 0/4")

// ParseShard parses "i/N": shard i (from 0) of N cooperating processes or
// hosts that together make one run. The range is checked by Validate.
func ParseShard(s string) (*results.Shard, error) {
	is, ns, ok := strings.Cut(s, "/")
	if !ok {
		return nil, fmt.Errorf("%q: %w", s, ErrShardSyntax)
	}
	i, err1 := strconv.Atoi(strings.TrimSpace(is))
	n, err2 := strconv.Atoi(strings.TrimSpace(ns))
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("%q: %w", s, ErrShardSyntax)
	}
	return &results.Shard{Index: i, Count: n}, nil
}

// waitStart waits until t, or returns early when done closes. A start time
// already past starts at once and says so: the shards will not overlap.
func waitStart(t time.Time, done <-chan struct{}, warn func(string)) bool {
	d := time.Until(t)
	if d <= 0 {
		if d < -time.Second {
			warn(fmt.Sprintf("the start time %s was %v ago; starting now, this shard will not overlap the others", t.Format(time.RFC3339), -d.Round(time.Millisecond)))
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
