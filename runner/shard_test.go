package runner

import (
	"errors"
	"testing"
	"time"

	"github.com/closeload/closeload/results"
)

func TestShardSlicesAddUp(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7} {
		var conns int
		var rate float64
		var cycles uint64
		for i := 0; i < n; i++ {
			p := DefaultPlan()
			p.Conns, p.Rate, p.Cycles = 20, 1001, 10007
			p.Shard = &results.Shard{Index: i, Count: n}
			if err := p.Validate(); err != nil {
				t.Fatalf("shard %d/%d: %v", i, n, err)
			}
			// A second validation (in a child) takes no second slice.
			if err := p.Validate(); err != nil {
				t.Fatal(err)
			}
			conns += p.Conns
			rate += p.Rate
			cycles += p.Cycles
		}
		if conns != 20 || rate != 1001 || cycles != 10007 {
			t.Fatalf("%d shards: conns %d rate %v cycles %d, want 20, 1001, 10007", n, conns, rate, cycles)
		}
	}
}

func TestShardBadInput(t *testing.T) {
	for _, s := range []string{"1", "a/b", "1/x"} {
		if _, err := ParseShard(s); !errors.Is(err, ErrShardSyntax) {
			t.Errorf("ParseShard(%q) = %v, want ErrShardSyntax", s, err)
		}
	}
	tests := []struct {
		i, n, conns int
	}{
		{2, 2, 8}, {-1, 2, 8}, {0, 0, 8}, {0, 4, 2}, // 2 conns over 4 shards: shard 0 gets none
	}
	for _, tc := range tests {
		p := DefaultPlan()
		p.Shard, p.Conns = &results.Shard{Index: tc.i, Count: tc.n}, tc.conns
		var fe *FieldError
		if err := p.Validate(); !errors.As(err, &fe) || fe.Field != "Shard" {
			t.Errorf("shard %d/%d of %d conns: %v, want the Shard field named", tc.i, tc.n, tc.conns, err)
		}
	}
}

func TestStartAt(t *testing.T) {
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
