package metrics

import (
	"math/rand/v2"
	"testing"

	"github.com/closeload/closeload/results"
)

// TestPromBucketsMatchDistribution holds the counts-array walk of
// promBuckets to the library's own Distribution: every bin's middle value
// lands in the same bucket either way.
func TestPromBucketsMatchDistribution(t *testing.T) {
	tests := []struct {
		name   string
		values func(r *rand.Rand) int64
	}{
		{"loopback cycles", func(r *rand.Rand) int64 { return 20_000 + int64(r.ExpFloat64()*150_000) }},
		{"wide", func(r *rand.Rand) int64 { return 1 + r.Int64N(results.HistogramHighest) }},
		{"small", func(r *rand.Rand) int64 { return 1 + r.Int64N(5000) }},
		{"on the bounds", func(r *rand.Rand) int64 { return bucketBoundsNanos[r.IntN(len(bucketBoundsNanos))] }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := results.NewHistogram()
			r := rand.New(rand.NewPCG(3, 4))
			for range 20_000 {
				if err := h.RecordValue(tt.values(r)); err != nil {
					t.Fatal(err)
				}
			}
			want := make([]uint64, len(bucketBoundsNanos))
			for _, bar := range h.Distribution() {
				mid := bar.From + (bar.To-bar.From+1)/2
				for i, b := range bucketBoundsNanos {
					if mid <= b || i == len(bucketBoundsNanos)-1 {
						want[i] += uint64(bar.Count)
						break
					}
				}
			}
			count, _, got := promBuckets(h)
			if count != 20_000 {
				t.Fatalf("count %d, want 20000", count)
			}
			var cum uint64
			for i, bound := range BucketBounds {
				cum += want[i]
				if got[bound] != cum {
					t.Errorf("le=%v: %d, Distribution says %d", bound, got[bound], cum)
				}
			}
		})
	}
}
