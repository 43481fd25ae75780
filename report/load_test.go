package report

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/closeload/closeload/results"
)

// FuzzDecodeRecord checks the fast path of reading records against
// results.Read: it never panics, accepts every record Read accepts, and
// accepts nothing Read rejects except a series it has not decoded yet.
func FuzzDecodeRecord(f *testing.F) {
	good, err := os.ReadFile(filepath.Join("testdata", "runs", "sharded", "storm-shard0.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(`{"schema": 1, "id": "x"}`))
	f.Add([]byte(`{"schema": 1, "id": "x", "series": null, "peaks": {}}`))
	f.Add([]byte(`{"schema": 1, "id": "x", "peaks": {"TIME_WAIT": {"total": 1}}, "series": [{"cycles": "many"}]}`))
	f.Add([]byte(`{"schema": 2, "id": "x"}`))
	f.Add([]byte(`{"id": "x"}`))
	f.Add([]byte(`{"schema": 1, "id": "x", "scenarios": [{"name": "a", "phases": {"total": {"histogram": "bad"}}}]}`))
	f.Add([]byte(`{"schema": 1, "id": "x"} trailing`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, series, fastErr := decodeRecord(data)
		slow, slowErr := results.Read(bytes.NewReader(data))
		switch {
		case slowErr == nil && fastErr != nil:
			t.Fatalf("results.Read accepts, decodeRecord rejects: %v", fastErr)
		case slowErr == nil && fast.ID != slow.ID:
			t.Fatalf("ids differ: %q and %q", fast.ID, slow.ID)
		case slowErr != nil && fastErr == nil && series == nil:
			t.Fatalf("decodeRecord accepts what results.Read rejects (%v)", slowErr)
		}
	})
}
