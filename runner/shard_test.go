package runner

import (
	"errors"
	"testing"
	"time"
)

func TestShardSlicesAddUp(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7} {
		var conns int
		var rate float64
		var cycles uint64
		for i := 0; i < n; i++ {
			s := DefaultSpec()
			s.Conns, s.Rate, s.Cycles = 20, 1001, 10007
			s.Shard = ""
			p, err := (func() (*Plan, error) { s.Shard = itoa(i) + "/" + itoa(n); return s.Validate() })()
			if err != nil {
				t.Fatalf("shard %d/%d: %v", i, n, err)
			}
			if p.Shard == nil || p.Shard.Index != i || p.Shard.Count != n {
				t.Fatalf("shard %d/%d parsed as %+v", i, n, p.Shard)
			}
			conns += p.Spec.Conns
			rate += p.Spec.Rate
			cycles += p.Spec.Cycles
		}
		if conns != 20 || rate != 1001 || cycles != 10007 {
			t.Fatalf("%d shards: conns %d rate %v cycles %d, want 20, 1001, 10007", n, conns, rate, cycles)
		}
	}
}

func itoa(i int) string { return string(rune('0' + i)) }

func TestShardBadInput(t *testing.T) {
	tests := []struct {
		shard string
		conns int
	}{
		{"1", 8}, {"2/2", 8}, {"-1/2", 8}, {"a/b", 8}, {"0/0", 8}, {"0/4", 2}, // 2 conns over 4 shards: shard 0 gets none
	}
	for _, tc := range tests {
		t.Run(tc.shard, func(t *testing.T) {
			s := DefaultSpec()
			s.Shard, s.Conns = tc.shard, tc.conns
			if _, err := s.Validate(); !errors.Is(err, ErrUsage) {
				t.Fatalf("err = %v, want a usage error", err)
			}
		})
	}
}

func TestStartAt(t *testing.T) {
	s := DefaultSpec()
	s.StartAt = "yesterday"
	if _, err := s.Validate(); !errors.Is(err, ErrUsage) {
		t.Fatalf("err = %v", err)
	}
	at := time.Now().Add(300 * time.Millisecond)
	start := time.Now()
	if !waitStart(at, nil, func(string) {}) || time.Since(start) < 250*time.Millisecond {
		t.Fatalf("waitStart returned after %v, want about 300ms", time.Since(start))
	}
	var warned string
	waitStart(time.Now().Add(-5*time.Second), nil, func(m string) { warned = m })
	if warned == "" {
		t.Fatal("a start time 5s past was not reported")
	}
}
