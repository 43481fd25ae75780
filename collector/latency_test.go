package collector

import (
	"sync"
	"testing"
)

func TestLatencyRecorder(t *testing.T) {
	tests := []struct {
		name      string
		record    int
		resetAt   int // Rotate before this connection; -1 = never
		wantTotal int64
	}{
		{"fewer than a buffer", 10, -1, 10},
		{"several buffers", recorderBuffer*3 + 5, -1, recorderBuffer*3 + 5},
		{"rotate mid-buffer loses nothing", 100, 30, 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewLatencySink(2)
			r := s.NewRecorder()
			for i := 0; i < tc.record; i++ {
				if i == tc.resetAt {
					s.Rotate()
				}
				tm := Timings{1000, 2000, 0, int64(10000 + i)}
				r.Record(1, &tm)
			}
			r.Flush()
			tot := s.Totals()
			if got := tot[1][PhaseTotal].TotalCount(); got != tc.wantTotal {
				t.Fatalf("total count = %d, want %d", got, tc.wantTotal)
			}
			if got := tot[1][PhaseDrain].TotalCount(); got != 0 {
				t.Fatalf("drain (absent phase) count = %d, want 0", got)
			}
			if got := tot[0][PhaseTotal].TotalCount(); got != 0 {
				t.Fatalf("scenario 0 count = %d, want 0", got)
			}
		})
	}
}

func TestLatencyRotateSplitsIntervals(t *testing.T) {
	s := NewLatencySink(1)
	var wg sync.WaitGroup
	recs := make([]*LatencyRecorder, 4)
	for i := range recs {
		recs[i] = s.NewRecorder()
	}
	var intervals int64
	for round := 0; round < 3; round++ {
		for _, r := range recs {
			wg.Add(1)
			go func(r *LatencyRecorder) {
				defer wg.Done()
				for i := 0; i < 100; i++ {
					tm := Timings{0, 0, 0, 5000}
					r.Record(0, &tm)
				}
				r.Flush()
			}(r)
		}
		wg.Wait()
		iv := s.Rotate()
		if got := iv[0][PhaseTotal].TotalCount(); got != 400 {
			t.Fatalf("round %d: interval count = %d, want 400", round, got)
		}
		intervals += iv[0][PhaseTotal].TotalCount()
	}
	if got := s.Totals()[0][PhaseTotal].TotalCount(); got != intervals {
		t.Fatalf("total %d != sum of intervals %d", got, intervals)
	}
}

func TestLatencyOutOfRangeCountedAsDropped(t *testing.T) {
	s := NewLatencySink(1)
	r := s.NewRecorder()
	tm := Timings{0, 0, 0, 61_000_000_000}
	r.Record(0, &tm)
	r.Flush()
	if s.Dropped() != 1 {
		t.Fatalf("dropped = %d, want 1", s.Dropped())
	}
}

func BenchmarkLatencyRecord(b *testing.B) {
	s := NewLatencySink(1)
	r := s.NewRecorder()
	tm := Timings{20000, 30000, 15000, 90000}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		tm[PhaseTotal] = int64(90000 + i%1000)
		r.Record(0, &tm)
	}
}
