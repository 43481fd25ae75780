// Package report compares runs: it groups records into variants (repeats of
// one sysctl assignment and configuration), merges shards, tests every
// difference against the baseline for significance with the Mann-Whitney U
// test of golang.org/x/perf/benchmath (as benchstat does), and writes the
// comparison as text, Markdown, CSV, JSON, Go benchmark format, plots, an
// HdrHistogram interval log and a self-contained HTML page. It imports only
// results: it reads records and knows nothing of how they were made.
package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/closeload/closeload/results"
)

// ErrNoRecords is returned when no usable record remains after skipping the
// damaged ones: a report of nothing would only mislead.
var ErrNoRecords = errors.New("no usable records")

// Input is one record to compare, with where it came from and the label the
// user gave it (label=path), which names its variant.
type Input struct {
	Run   *results.Run
	Path  string
	Label string
}

// Skipped names an input that could not be used and why, so the user can
// repair or remove it; skipping never fails the report on its own.
type Skipped struct {
	Path string `json:"path"`
	Err  string `json:"error"`
}

func (s Skipped) String() string { return fmt.Sprintf("skipped %s: %s", s.Path, s.Err) }

// Load reads the report's arguments, in any order: record files, directories
// (a matrix directory: every *.json record below it, in run order) and
// label=path (the label names the variant of every record under path). A
// damaged record is skipped and named; Load fails only when nothing usable
// remains.
func Load(args []string) ([]Input, []Skipped, error) {
	var inputs []Input
	var skipped []Skipped
	for _, arg := range args {
		label, path := splitLabel(arg)
		st, err := os.Stat(path)
		if err != nil {
			skipped = append(skipped, Skipped{Path: path, Err: errText(err)})
			continue
		}
		if !st.IsDir() {
			r, err := results.ReadFile(path)
			if err != nil {
				skipped = append(skipped, Skipped{Path: path, Err: stripPath(err, path)})
				continue
			}
			inputs = append(inputs, Input{Run: r, Path: path, Label: label})
			continue
		}
		in, sk := loadDir(path, label)
		inputs = append(inputs, in...)
		skipped = append(skipped, sk...)
		if len(in) == 0 && len(sk) == 0 {
			skipped = append(skipped, Skipped{Path: path, Err: "no closeload records in this directory"})
		}
	}
	if len(inputs) == 0 {
		if len(args) == 0 {
			return nil, nil, fmt.Errorf("%w: no inputs given", ErrNoRecords)
		}
		return nil, skipped, fmt.Errorf("%w among %d input(s)", ErrNoRecords, len(args))
	}
	return inputs, skipped, nil
}

// splitLabel splits label=path; an argument that names an existing file is
// a path even when it contains '='.
func splitLabel(arg string) (label, path string) {
	if _, err := os.Stat(arg); err == nil {
		return "", arg
	}
	if i := strings.IndexByte(arg, '='); i > 0 {
		return arg[:i], arg[i+1:]
	}
	return "", arg
}

// loadDir reads every record below dir. JSON files that are not closeload
// records at all (a matrix manifest, say) are passed over silently; records
// that are damaged are skipped and named. Records come back in run order
// (start time, then path), so the first variant run is the first variant.
func loadDir(dir, label string) ([]Input, []Skipped) {
	var inputs []Input
	var skipped []Skipped
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			skipped = append(skipped, Skipped{Path: path, Err: errText(err)})
			return nil
		}
		name := d.Name()
		if d.IsDir() {
			if path != dir && strings.HasPrefix(name, ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".json") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			skipped = append(skipped, Skipped{Path: path, Err: errText(err)})
			return nil
		}
		if isForeignJSON(data) {
			return nil
		}
		r, err := results.Read(bytes.NewReader(data))
		if err != nil {
			skipped = append(skipped, Skipped{Path: path, Err: err.Error()})
			return nil
		}
		inputs = append(inputs, Input{Run: r, Path: path, Label: label})
		return nil
	})
	if err != nil {
		skipped = append(skipped, Skipped{Path: dir, Err: errText(err)})
	}
	sort.SliceStable(inputs, func(a, b int) bool {
		ra, rb := inputs[a].Run, inputs[b].Run
		if !ra.Start.Equal(rb.Start) {
			return ra.Start.Before(rb.Start)
		}
		return inputs[a].Path < inputs[b].Path
	})
	return inputs, skipped
}

// isForeignJSON reports whether data is a whole, valid JSON object with
// neither a "schema" nor an "id" field: another tool's file, not a damaged
// record.
func isForeignJSON(data []byte) bool {
	var probe map[string]json.RawMessage
	if json.Unmarshal(data, &probe) != nil {
		return false
	}
	_, s := probe["schema"]
	_, id := probe["id"]
	return !s && !id
}

func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// stripPath drops the "path: " prefix results.ReadFile adds, since the
// Skipped entry names the path already.
func stripPath(err error, path string) string {
	return strings.TrimPrefix(errText(err), path+": ")
}
