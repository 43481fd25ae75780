package report

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// goldenCases are the fixture inputs whose outputs are kept as goldens.
var goldenCases = []struct {
	name string
	args []string
	opts Options
}{
	{"tw-reuse", []string{"testdata/runs/tw-reuse"}, Options{}},
	{"fin-timeout", []string{"testdata/runs/fin-timeout"}, Options{}},
	{"sharded", []string{"testdata/runs/sharded"}, Options{}},
}

func loadCompare(t testing.TB, args []string, opts Options) *Comparison {
	t.Helper()
	in, skipped, err := Load(args)
	if err != nil {
		t.Fatal(err)
	}
	c, err := CompareInputs(in, opts)
	if err != nil {
		t.Fatal(err)
	}
	c.Skipped = skipped
	return c
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./report -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; got:\n%s\n(run go test ./report -update if the change is intended)", path, got)
	}
}

func TestGolden(t *testing.T) {
	formats := []struct {
		ext   string
		write func(c *Comparison, b *bytes.Buffer) error
	}{
		{"txt", func(c *Comparison, b *bytes.Buffer) error { return c.WriteText(b) }},
		{"md", func(c *Comparison, b *bytes.Buffer) error { return c.WriteMarkdown(b) }},
		{"csv", func(c *Comparison, b *bytes.Buffer) error { return c.WriteCSV(b) }},
		{"bench", func(c *Comparison, b *bytes.Buffer) error { return c.WriteBench(b) }},
	}
	for _, gc := range goldenCases {
		c := loadCompare(t, gc.args, gc.opts)
		for _, f := range formats {
			t.Run(gc.name+"."+f.ext, func(t *testing.T) {
				var b bytes.Buffer
				if err := f.write(c, &b); err != nil {
					t.Fatal(err)
				}
				checkGolden(t, gc.name+"."+f.ext, b.Bytes())
			})
		}
	}
}
