package results

import (
	"errors"
	"fmt"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// One histogram geometry for every run: 1 ns .. 60 s at 3
// significant digits, so any two histograms of any two runs merge exactly.
const (
	HistogramLowest  int64 = 1
	HistogramHighest int64 = 60_000_000_000
	HistogramDigits        = 3
)

// ErrHistogram marks a histogram that cannot be decoded or has a foreign
// geometry; merging it would silently skew percentiles.
var ErrHistogram = errors.New("bad histogram")

// NewHistogram returns an empty histogram of the one geometry.
func NewHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(HistogramLowest, HistogramHighest, HistogramDigits)
}

// EncodeHistogram returns the V2 compressed, base64 form stored in records.
func EncodeHistogram(h *hdrhistogram.Histogram) (string, error) {
	b, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return "", fmt.Errorf("%w: encode: %v", ErrHistogram, err)
	}
	return string(b), nil
}

// DecodeHistogram reverses EncodeHistogram and checks the geometry.
func DecodeHistogram(s string) (*hdrhistogram.Histogram, error) {
	if s == "" {
		return NewHistogram(), nil
	}
	h, err := hdrhistogram.Decode([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHistogram, err)
	}
	if h.SignificantFigures() != HistogramDigits || h.HighestTrackableValue() < HistogramHighest {
		return nil, fmt.Errorf("%w: geometry %d..%d at %d digits, want %d..%d at %d",
			ErrHistogram, h.LowestTrackableValue(), h.HighestTrackableValue(), h.SignificantFigures(),
			HistogramLowest, HistogramHighest, HistogramDigits)
	}
	return h, nil
}

// Summarize turns a histogram into the Phase stored in a record.
func Summarize(h *hdrhistogram.Histogram) (Phase, error) {
	enc, err := EncodeHistogram(h)
	if err != nil {
		return Phase{}, err
	}
	p := Phase{Count: h.TotalCount(), Histogram: enc}
	if p.Count == 0 {
		return p, nil
	}
	v := h.ValueAtPercentilesSlice([]float64{50, 90, 99, 99.9, 99.99})
	p.Min, p.Max, p.Mean, p.StdDev = h.Min(), h.Max(), h.Mean(), h.StdDev()
	p.P50, p.P90, p.P99, p.P999, p.P9999 = v[0], v[1], v[2], v[3], v[4]
	return p, nil
}
