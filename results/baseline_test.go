package results

import (
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// TestBaselinesRead keeps the committed baseline records readable by this
// version: a user's CI gates its release candidates on them.
func TestBaselinesRead(t *testing.T) {
	n := 0
	err := filepath.WalkDir("baseline", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".json") {
			return err
		}
		n++
		r, err := ReadFile(path)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			return nil
		}
		if r.Totals.Cycles == 0 || r.Interrupted || len(r.Scenarios) == 0 {
			t.Errorf("%s: %d cycles, interrupted %v: not a usable baseline", path, r.Totals.Cycles, r.Interrupted)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 4 {
		t.Errorf("%d baseline records; a gate needs at least 4 repeats of a baseline", n)
	}
}
