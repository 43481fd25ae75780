package metrics

import (
	"math"

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
		out[i] = int64(math.Round(b * 1e9))
	}
	return out
}()

// promBuckets converts a nanosecond HdrHistogram into the cumulative bucket
// counts, count and sum (seconds) of a Prometheus histogram. A recorded
// value belongs to a bucket when the middle of its HdrHistogram bin is at
// most the bound: the error is within the histogram's significant digits.
//
// It walks the exported counts array once instead of calling Distribution,
// which builds a bar per bin and costs about 2 ms per histogram of a long
// run; TestPromBucketsMatchDistribution holds the two to the same answer.
func promBuckets(h *hdrhistogram.Histogram) (count uint64, sum float64, buckets map[float64]uint64) {
	s := h.Export()
	unitMag, halfMag := binGeometry(s.LowestTrackableValue, int(s.SignificantFigures))
	half := int64(1) << halfMag
	per := make([]uint64, len(bucketBoundsNanos))
	b := 0
	for idx, c := range s.Counts {
		if c == 0 {
			continue
		}
		bucket := int64(idx)>>halfMag - 1
		sub := int64(idx)&(half-1) + half
		if bucket < 0 {
			sub -= half
			bucket = 0
		}
		shift := uint(bucket + unitMag)
		mid := sub<<shift + (int64(1)<<shift)>>1
		for b < len(bucketBoundsNanos)-1 && mid > bucketBoundsNanos[b] {
			b++
		}
		per[b] += uint64(c)
	}
	buckets = make(map[float64]uint64, len(BucketBounds))
	var cum uint64
	for i, bound := range BucketBounds {
		cum += per[i]
		buckets[bound] = cum
	}
	n := h.TotalCount()
	return uint64(n), h.Mean() * float64(n) / 1e9, buckets
}

// binGeometry returns the unit and half-sub-bucket magnitudes of an
// HdrHistogram made with the given lowest value and significant digits, the
// way the library lays out its counts array.
func binGeometry(lowest int64, digits int) (unitMag, halfMag int64) {
	lowest, digits = max(lowest, 1), min(max(digits, 1), 5)
	single := 2 * math.Pow10(digits)
	halfMag = max(int64(math.Ceil(math.Log2(single))), 1) - 1
	unitMag = max(int64(math.Floor(math.Log2(float64(lowest)))), 0)
	return unitMag, halfMag
}
