package results

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

func TestWriteHlog(t *testing.T) {
	start := time.Date(2026, 3, 1, 10, 0, 1, 234_000_000, time.UTC)
	total, connect := NewHistogram(), NewHistogram()
	for i := int64(1); i <= 1000; i++ {
		total.RecordValue(i * 1000)
		connect.RecordValue(i * 10)
	}
	ivs := []HlogInterval{
		{Tag: "connect", Start: start.Add(time.Second), End: start.Add(2 * time.Second), Histogram: connect},
		{Tag: "total", Start: start, End: start.Add(time.Second), Histogram: total},
		{Start: start, End: start.Add(time.Second), Histogram: total},
	}
	var b bytes.Buffer
	if err := WriteHlog(&b, start, "test log", ivs); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	for _, want := range []string{"#[StartTime: 1772359201.234 (seconds since epoch), 2026-03-01T10:00:01.234Z]", "#[BaseTime: 1772359201.234 (seconds since epoch)]", "#test log"} {
		if !strings.Contains(text, want) {
			t.Errorf("log lacks %q:\n%s", want, text)
		}
	}
	rd := hdrhistogram.NewHistogramLogReader(&b)
	var tags []string
	for {
		h, err := rd.NextIntervalHistogram()
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if h == nil {
			break
		}
		tags = append(tags, h.Tag())
		if h.Tag() == "" && (h.TotalCount() != 1000 || h.StartTimeMs() != start.UnixMilli()) {
			t.Errorf("untagged interval: %d values from %d ms, want 1000 from %d", h.TotalCount(), h.StartTimeMs(), start.UnixMilli())
		}
	}
	if got := strings.Join(tags, "|"); got != "|total|connect" {
		t.Errorf("intervals in order %q, want untagged first, then by start: \"|total|connect\"", got)
	}
}

func TestWriteHlogBadTag(t *testing.T) {
	for _, tag := range []string{"a,b", "a b", "a\nb"} {
		t.Run(tag, func(t *testing.T) {
			err := WriteHlog(io.Discard, time.Now(), "", []HlogInterval{{Tag: tag, Histogram: NewHistogram()}})
			if !errors.Is(err, ErrHlogTag) {
				t.Errorf("tag %q: %v, want ErrHlogTag", tag, err)
			}
		})
	}
}
