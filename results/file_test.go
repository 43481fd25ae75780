package results

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sampleRun(t *testing.T) *Run {
	t.Helper()
	h := NewHistogram()
	for i := int64(1); i <= 1000; i++ {
		if err := h.RecordValue(i * 1000); err != nil {
			t.Fatal(err)
		}
	}
	ph, err := Summarize(h)
	if err != nil {
		t.Fatal(err)
	}
	return &Run{
		ID:         "20261124T000000Z-1",
		Provenance: Provenance{Tool: "closeload", Kernel: "6.18", Cores: 2, Args: []string{"run"}},
		Config:     Config{Mix: []MixEntry{{"client-halfclose", 1}}, Shape: "closed", Conns: 8, Duration: 10 * time.Second},
		Start:      time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC),
		End:        time.Date(2026, 11, 24, 0, 0, 10, 0, time.UTC),
		Scenarios: []ScenarioResult{{Name: "client-halfclose", Weight: 1, Cycles: 1000, Rate: 100,
			Phases: map[string]Phase{"total": ph}, Errors: map[string]ErrorCount{"reset": {2, "connection reset by peer"}}}},
	}
}

func TestWriteReadRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "r.json")
	in := sampleRun(t)
	if err := Write(path, in); err != nil {
		t.Fatal(err)
	}
	out, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if out.Schema != SchemaVersion || out.ID != in.ID || out.Scenarios[0].Cycles != 1000 {
		t.Fatalf("round trip lost data: %+v", out)
	}
	p := out.Scenarios[0].Phases["total"]
	h, err := DecodeHistogram(p.Histogram)
	if err != nil {
		t.Fatal(err)
	}
	if h.TotalCount() != 1000 || h.ValueAtQuantile(50) != p.P50 {
		t.Fatalf("histogram count %d p50 %d, record p50 %d", h.TotalCount(), h.ValueAtQuantile(50), p.P50)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("write left %d files behind, want just the record", len(entries))
	}
}

// TestReadDamaged checks that every kind of damage is named, with the
// sentinel a caller can test for.
func TestReadDamaged(t *testing.T) {
	tests := []struct {
		file    string
		wantErr error
		want    string
	}{
		{"empty.json", ErrDamaged, "empty file"},
		{"truncated.json", ErrDamaged, "truncated"},
		{"not-json.json", ErrDamaged, "invalid character"},
		{"no-schema.json", ErrDamaged, "not a closeload record"},
		{"future-schema.json", ErrVersion, "schema 99"},
		{"wrong-type.json", ErrDamaged, `field "scenarios.cycles"`},
		{"bad-histogram.json", ErrDamaged, "scenario client-halfclose phase total"},
		{"no-id.json", ErrDamaged, `empty "id"`},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			_, err := ReadFile(filepath.Join("testdata", tc.file))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.file) {
				t.Fatalf("err %q should name the file and say %q", err, tc.want)
			}
		})
	}
}

func TestReadGoodFixture(t *testing.T) {
	r, err := ReadFile(filepath.Join("testdata", "good.json"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Scenarios[0].Phases["total"].Count != 1000 {
		t.Fatalf("good fixture: %+v", r.Scenarios[0])
	}
}

func TestDecodeHistogramRejectsForeignGeometry(t *testing.T) {
	h := NewHistogram()
	_ = h.RecordValue(5)
	enc, _ := EncodeHistogram(h)
	if _, err := DecodeHistogram(enc); err != nil {
		t.Fatalf("own geometry rejected: %v", err)
	}
	if _, err := DecodeHistogram("bm90IGEgaGlzdG9ncmFt"); !errors.Is(err, ErrHistogram) {
		t.Fatalf("garbage: err = %v", err)
	}
}

func FuzzRead(f *testing.F) {
	for _, name := range []string{"good.json", "truncated.json", "wrong-type.json", "bad-histogram.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Read(strings.NewReader(string(b)))
		if err == nil && (r == nil || r.ID == "") {
			t.Fatal("accepted a record without an id")
		}
	})
}
