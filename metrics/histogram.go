package metrics

import (
	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// BucketBounds are the upper bounds, in seconds, of the phase histograms'
// buckets: a 1-2.5-5 series from 10 µs (a loopback connect) to 60 s (the
// histograms' ceiling). Fixed, so that every run and every shard has the
// same buckets and histogram_quantile can sum them.
var BucketBounds = []float64{
	10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6,
	1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3,
	1, 2.5, 5, 10, 25, 60,
}

// bucketBoundsNanos are BucketBounds in the histograms' unit.
var bucketBoundsNanos = func() []int64 {
	out := make([]int64, len(BucketBounds))
	for i, b := range BucketBounds {
		out[i] = int64(b * 1e9)
	}
	return out
}()

// promBuckets converts a nanosecond HdrHistogram into the cumulative bucket
// counts, count and sum (seconds) of a Prometheus histogram. A recorded
// value belongs to a bucket when the middle of its HdrHistogram bin is at
// most the bound: the error is within the histogram's 3 significant digits.
func promBuckets(h *hdrhistogram.Histogram) (count uint64, sum float64, buckets map[float64]uint64) {
	per := make([]uint64, len(bucketBoundsNanos))
	for _, bar := range h.Distribution() {
		if bar.Count == 0 {
			continue
		}
		mid := bar.From + (bar.To-bar.From)/2
		for i, b := range bucketBoundsNanos {
			if mid <= b {
				per[i] += uint64(bar.Count)
				break
			}
		}
	}
	buckets = make(map[float64]uint64, len(BucketBounds))
	var cum uint64
	for i, b := range BucketBounds {
		cum += per[i]
		buckets[b] = cum
	}
	n := h.TotalCount()
	return uint64(n), h.Mean() * float64(n) / 1e9, buckets
}
