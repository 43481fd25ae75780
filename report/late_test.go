package report

import (
	"strings"
	"testing"
	"time"

	"github.com/closeload/closeload/results"
)

func TestLateShards(t *testing.T) {
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	rec := func(i int, start time.Time) *results.Run {
		return &results.Run{ID: "r", Shard: &results.Shard{Index: i, Count: 3}, Config: results.Config{StartAt: at}, Start: start}
	}
	notes := lateShards("r", []*results.Run{
		rec(0, at.Add(20*time.Millisecond)),
		rec(1, at.Add(5*time.Second)),
		rec(2, at.Add(-time.Second)),
	})
	if len(notes) != 1 || !strings.Contains(notes[0], "shard 1/3 started 5s after") {
		t.Fatalf("notes = %q, want one note naming shard 1/3, 5s late", notes)
	}
	if got := lateShards("r", []*results.Run{{ID: "r", Start: at}}); got != nil {
		t.Fatalf("a record without a shard or start time got notes %q", got)
	}
}
