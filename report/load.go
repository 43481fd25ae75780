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
	"runtime"
	"sort"
	"strings"
	"sync"

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

	// series is the record's series, still JSON: decoding it is most of
	// the cost of reading a record, and only plots need it.
	series json.RawMessage
}

// Skipped names an input that could not be used and why, so the user can
// repair or remove it; skipping never fails the report on its own.
type Skipped struct {
	Path string `json:"path"`
	Err  string `json:"error"`
}

// String is the line the report prints for a skipped input.
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
			data, err := os.ReadFile(path)
			if err == nil {
				var r *results.Run
				var series json.RawMessage
				if r, series, err = decodeRecord(data); err == nil {
					inputs = append(inputs, Input{Run: r, Path: path, Label: label, series: series})
					continue
				}
			}
			skipped = append(skipped, Skipped{Path: path, Err: errText(err)})
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
// records at all (the matrix's index.json, say) are passed over silently;
// records that are damaged are skipped and named. Records come back in run
// order (start time, then path), so the first variant run is the first
// variant.
func loadDir(dir, label string) ([]Input, []Skipped) {
	var paths []string
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
		if !strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".json") {
			paths = append(paths, path)
		}
		return nil
	})
	if err != nil {
		skipped = append(skipped, Skipped{Path: dir, Err: errText(err)})
	}
	type loaded struct {
		run     *results.Run
		series  json.RawMessage
		err     error
		foreign bool
	}
	out := make([]loaded, len(paths))
	// Decoding JSON is the cost of a report; records decode in parallel.
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(runtime.GOMAXPROCS(0), len(paths)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				data, err := os.ReadFile(paths[i])
				if err != nil {
					out[i].err = err
					continue
				}
				out[i].run, out[i].series, out[i].err = decodeRecord(data)
				if out[i].err != nil && isForeignJSON(data) {
					out[i].foreign = true
				}
			}
		}()
	}
	for i := range paths {
		next <- i
	}
	close(next)
	wg.Wait()
	var inputs []Input
	for i, l := range out {
		switch {
		case l.foreign:
		case l.err != nil:
			skipped = append(skipped, Skipped{Path: paths[i], Err: errText(l.err)})
		default:
			inputs = append(inputs, Input{Run: l.run, Path: paths[i], Label: label, series: l.series})
		}
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

// decodeRecord decodes a record in one pass when it is sound, and falls
// back to results.Read, which says precisely what is wrong, when it is not.
// Reports read many large records and results.Read parses each twice; the
// series, most of a record, is checked for syntax but left as JSON unless a
// shard merge or the peaks need it now (see Comparison.loadSeries).
func decodeRecord(data []byte) (*results.Run, json.RawMessage, error) {
	var probe struct {
		// Schema shadows Run.Schema to tell a missing field from 0.
		Schema *int `json:"schema"`
		results.Run
		Series json.RawMessage `json:"series"`
	}
	if err := json.Unmarshal(data, &probe); err == nil && probe.Schema != nil && *probe.Schema == results.SchemaVersion && probe.ID != "" {
		r := probe.Run
		r.Schema = *probe.Schema
		series := probe.Series
		if isNull(series) {
			series = nil
		}
		ok := histogramsDecode(&r)
		if ok && series != nil && (r.Shard != nil || len(r.Peaks) == 0) {
			ok = json.Unmarshal(series, &r.Series) == nil
			series = nil
		}
		if ok {
			return &r, series, nil
		}
	}
	r, err := results.Read(bytes.NewReader(data))
	return r, nil, err
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(bytes.TrimSpace(raw)) == "null"
}

// histogramsDecode checks every histogram of a record, as results.Read
// does: a record whose histogram is damaged must not be compared.
func histogramsDecode(r *results.Run) bool {
	for _, s := range r.Scenarios {
		for _, p := range s.Phases {
			if _, err := results.DecodeHistogram(p.Histogram); err != nil {
				return false
			}
		}
	}
	return true
}

// isForeignJSON reports whether data is a whole, valid JSON object without
// the "id" every record has: the matrix's index.json or another tool's
// file, not a damaged record.
func isForeignJSON(data []byte) bool {
	var probe map[string]json.RawMessage
	if json.Unmarshal(data, &probe) != nil {
		return false
	}
	_, id := probe["id"]
	return !id
}

func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
