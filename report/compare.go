package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/closeload/closeload/results"
)

// ErrBaseline is returned when --baseline names no variant.
var ErrBaseline = errors.New("unknown baseline")

// Options tune a comparison.
type Options struct {
	// Baseline names the variant the others are compared with: its name,
	// its label, or its index counted from 0. Empty means the first.
	Baseline string
	// Alpha is the significance level of the Mann-Whitney U test; 0 means
	// 0.05, benchstat's default.
	Alpha float64
	// Confidence is the level of the median's confidence interval; 0 means
	// 0.95.
	Confidence float64
}

// Comparison is the side-by-side view of variants: one table per scenario
// (plus run-wide rows), each row a metric, each cell a variant's repeats
// summarized and tested against the baseline. It is plain data (JSON) plus
// the merged runs that plots and the HTML page draw from.
type Comparison struct {
	Alpha      float64   `json:"alpha"`
	Confidence float64   `json:"confidence"`
	Baseline   int       `json:"baseline"`
	Variants   []Variant `json:"variants"`
	Tables     []Table   `json:"tables"`
	// Notes are warnings the reader must see: skipped and duplicate
	// records, missing shards, interrupted runs, runs made on different
	// kernels.
	Notes []string `json:"notes,omitempty"`
	// Skipped lists inputs that could not be read; the caller of Load sets
	// it so that every output names them.
	Skipped []Skipped `json:"skipped,omitempty"`

	groups []*variantGroup
	// plotCache holds the series as the plots draw them, once decoded.
	plotCache [][]plotRun
	plotHave  bool
}

// Variant is one group of repeats.
type Variant struct {
	Name    string            `json:"name"`
	Key     string            `json:"key"`
	Label   string            `json:"label,omitempty"`
	Sysctls map[string]string `json:"sysctls,omitempty"`
	Config  string            `json:"config"`
	Runs    []RunInfo         `json:"runs"`
}

// RunInfo says which records made one repeat of a variant.
type RunInfo struct {
	ID          string                 `json:"id"`
	Repeat      int                    `json:"repeat"`
	Paths       []string               `json:"paths,omitempty"`
	Shards      int                    `json:"shards,omitempty"`
	Missing     []results.MissingShard `json:"missing_shards,omitempty"`
	Interrupted bool                   `json:"interrupted,omitempty"`
	Start       time.Time              `json:"start"`
}

// Table is one scenario's rows; Scenario "all" holds the run-wide rows
// (socket-state peaks, kernel counters, totals) when the mix has several
// scenarios; with one scenario they are part of its table.
type Table struct {
	Scenario string `json:"scenario"`
	Rows     []Row  `json:"rows"`
}

// Row is one metric across the variants.
type Row struct {
	Metric string `json:"metric"`
	Unit   string `json:"unit"`
	// Bench is the unit the metric has in Go benchmark format.
	Bench string `json:"bench_unit"`
	// Better is +1 when higher is better, -1 when lower is, 0 when neither.
	Better int    `json:"better"`
	Cells  []Cell `json:"cells"`

	// vals is variant → repeat → value, NaN where a run had none.
	vals [][]float64
}

// Verdicts of a cell against the baseline.
const (
	VerdictBaseline       = "baseline"
	VerdictSignificant    = "significant"
	VerdictNotSignificant = "not significant"
	VerdictTooFew         = "too few runs"
	VerdictIdentical      = "identical"
	VerdictNoData         = "no data"
)

// Cell is one variant's repeats of one metric.
type Cell struct {
	// Values holds one value per repeat, in run order.
	Values []float64 `json:"values"`
	N      int       `json:"n"`
	Median float64   `json:"median"`
	// Lo and Hi bound the median's confidence interval; absent when too
	// few repeats make it infinite.
	Lo *float64 `json:"lo,omitempty"`
	Hi *float64 `json:"hi,omitempty"`
	// Range is benchstat's "±x%" of the interval ("∞" when unbounded).
	Range string `json:"range"`
	// Ratio is Median over the baseline's median; absent for the baseline
	// and when the baseline's median is 0.
	Ratio *float64 `json:"ratio,omitempty"`
	// P is the Mann-Whitney U p-value against the baseline.
	P       *float64 `json:"p,omitempty"`
	Verdict string   `json:"verdict"`
	// Direction is "better" or "worse" for a significant change of a
	// metric with a preferred direction.
	Direction string `json:"direction,omitempty"`
}

// variantGroup is a variant's merged runs, in run order, with the records
// they came from.
type variantGroup struct {
	key, label, name string
	runs             []*results.Run
	infos            []RunInfo
	sources          [][]*results.Run
	// series holds, per run, its series still as JSON (nil once decoded).
	series []json.RawMessage
}

// loadSeries decodes run i's series if Load left it as JSON.
func (g *variantGroup) loadSeries(i int) error {
	if i >= len(g.series) || g.series[i] == nil {
		return nil
	}
	var s []results.Sample
	if err := json.Unmarshal(g.series[i], &s); err != nil {
		return fmt.Errorf("run %s: series: %w", g.runs[i].ID, err)
	}
	g.runs[i].Series = s
	g.series[i] = nil
	return nil
}

// Compare groups runs into variants, merges shards, and compares every
// variant with the baseline. Runs are records as read: shards of one run id
// are merged, repeats of one variant (same sysctls and configuration) are
// the samples of the significance test.
func Compare(runs []*results.Run, opts Options) (*Comparison, error) {
	in := make([]Input, len(runs))
	for i, r := range runs {
		in[i] = Input{Run: r}
	}
	return CompareInputs(in, opts)
}

// CompareInputs is Compare for inputs that carry a path and a label.
func CompareInputs(inputs []Input, opts Options) (*Comparison, error) {
	if opts.Alpha == 0 {
		opts.Alpha = 0.05
	}
	if opts.Confidence == 0 {
		opts.Confidence = 0.95
	}
	if opts.Alpha <= 0 || opts.Alpha >= 1 {
		return nil, fmt.Errorf("alpha %g: want a level between 0 and 1, such as 0.05", opts.Alpha)
	}
	if opts.Confidence <= 0 || opts.Confidence >= 1 {
		return nil, fmt.Errorf("confidence %g: want a level between 0 and 1, such as 0.95", opts.Confidence)
	}
	c := &Comparison{Alpha: opts.Alpha, Confidence: opts.Confidence}
	groups, notes := groupInputs(inputs)
	c.Notes = append(c.Notes, notes...)
	if len(groups) == 0 {
		return nil, fmt.Errorf("%w: every record was unusable", ErrNoRecords)
	}
	nameVariants(groups)
	c.groups = groups
	base, err := findBaseline(groups, opts.Baseline)
	if err != nil {
		return nil, err
	}
	c.Baseline = base
	for _, g := range groups {
		v := Variant{Name: g.name, Key: g.key, Label: g.label, Sysctls: g.runs[0].Sysctls.Applied,
			Config: describeConfig(g.runs[0].Config), Runs: g.infos}
		c.Variants = append(c.Variants, v)
	}
	c.Notes = append(c.Notes, provenanceNotes(groups)...)
	var stat []string
	c.Tables = buildTables(groups, base, opts, func(err error) { stat = appendUnique(stat, err.Error()) })
	for _, s := range stat {
		if strings.Contains(s, "confidence interval") {
			s += " (no ± is shown where it is unbounded)"
		}
		c.Notes = append(c.Notes, "statistics: "+s)
	}
	return c, nil
}

// groupInputs drops duplicate records, merges shards per run id and groups
// the merged runs into variants in the order they first appear.
func groupInputs(inputs []Input) ([]*variantGroup, []string) {
	var notes []string
	type shardKey struct {
		id    string
		index int
	}
	seen := map[shardKey]string{}
	var ids []string
	byID := map[string][]Input{}
	for _, in := range inputs {
		if in.Run == nil {
			continue
		}
		k := shardKey{in.Run.ID, -1}
		if in.Run.Shard != nil {
			k.index = in.Run.Shard.Index
		}
		if prev, dup := seen[k]; dup {
			what := "run " + in.Run.ID
			if k.index >= 0 {
				what += fmt.Sprintf(" shard %d/%d", k.index, in.Run.Shard.Count)
			}
			notes = append(notes, fmt.Sprintf("duplicate record of %s ignored: %s (using %s)", what, orUnnamed(in.Path), orUnnamed(prev)))
			continue
		}
		seen[k] = orUnnamed(in.Path)
		if _, ok := byID[in.Run.ID]; !ok {
			ids = append(ids, in.Run.ID)
		}
		byID[in.Run.ID] = append(byID[in.Run.ID], in)
	}
	var groups []*variantGroup
	index := map[string]*variantGroup{}
	for _, id := range ids {
		ins := byID[id]
		recs := make([]*results.Run, len(ins))
		var paths []string
		for i, in := range ins {
			recs[i] = in.Run
			if in.Path != "" {
				paths = append(paths, in.Path)
			}
		}
		var series json.RawMessage
		if len(ins) == 1 {
			series = ins[0].series
		}
		merged, missing, err := results.Merge(recs)
		if err != nil {
			notes = append(notes, fmt.Sprintf("run %s skipped: %v (%s)", id, err, strings.Join(paths, ", ")))
			continue
		}
		for _, m := range missing {
			notes = append(notes, m.String()+": its figures cover only part of the load")
		}
		notes = append(notes, lateShards(id, recs)...)
		if merged.Interrupted {
			reason := merged.InterruptReason
			if reason == "" {
				reason = "no reason recorded"
			}
			notes = append(notes, fmt.Sprintf("run %s was interrupted (%s): its figures cover %.1fs", id, reason, merged.MeasuredSeconds))
		}
		label := ins[0].Label
		key := VariantKey(merged)
		gk := label + "\x00" + key
		g := index[gk]
		if g == nil {
			g = &variantGroup{key: key, label: label}
			index[gk] = g
			groups = append(groups, g)
		}
		info := RunInfo{ID: id, Repeat: merged.Repeat, Paths: paths, Missing: missing, Interrupted: merged.Interrupted, Start: merged.Start}
		if recs[0].Shard != nil {
			info.Shards = recs[0].Shard.Count
		}
		g.runs = append(g.runs, merged)
		g.infos = append(g.infos, info)
		g.sources = append(g.sources, recs)
		g.series = append(g.series, series)
	}
	for _, g := range groups {
		order := make([]int, len(g.runs))
		for i := range order {
			order[i] = i
		}
		sort.SliceStable(order, func(a, b int) bool { return g.runs[order[a]].Start.Before(g.runs[order[b]].Start) })
		runs, infos, srcs, series := make([]*results.Run, len(order)), make([]RunInfo, len(order)), make([][]*results.Run, len(order)), make([]json.RawMessage, len(order))
		for i, j := range order {
			runs[i], infos[i], srcs[i], series[i] = g.runs[j], g.infos[j], g.sources[j], g.series[j]
		}
		g.runs, g.infos, g.sources, g.series = runs, infos, srcs, series
	}
	return groups, notes
}

func orUnnamed(p string) string {
	if p == "" {
		return "(in memory)"
	}
	return p
}

func findBaseline(groups []*variantGroup, want string) (int, error) {
	if want == "" {
		return 0, nil
	}
	for i, g := range groups {
		if g.name == want || (g.label != "" && g.label == want) {
			return i, nil
		}
	}
	if i, err := strconv.Atoi(want); err == nil && i >= 0 && i < len(groups) {
		return i, nil
	}
	names := make([]string, len(groups))
	for i, g := range groups {
		names[i] = fmt.Sprintf("%d=%q", i, g.name)
	}
	return 0, fmt.Errorf("%w %q: variants are %s", ErrBaseline, want, strings.Join(names, ", "))
}

// provenanceNotes warns when runs that are compared were not made alike.
func provenanceNotes(groups []*variantGroup) []string {
	var notes []string
	vals := func(get func(r *results.Run) string) []string {
		var out []string
		for _, g := range groups {
			for _, r := range g.runs {
				out = appendUnique(out, get(r))
			}
		}
		return out
	}
	check := func(what string, get func(r *results.Run) string) {
		if v := vals(get); len(v) > 1 {
			notes = append(notes, fmt.Sprintf("runs differ in %s: %s", what, strings.Join(v, ", ")))
		}
	}
	check("kernel", func(r *results.Run) string { return r.Provenance.Kernel })
	check("closeload version", func(r *results.Run) string { return r.Provenance.Version })
	check("cores", func(r *results.Run) string { return strconv.Itoa(r.Provenance.Cores) })
	check("sysctl mode", func(r *results.Run) string { return r.Sysctls.Mode })
	for _, g := range groups {
		if len(g.runs) == 1 {
			notes = append(notes, fmt.Sprintf("variant %s has one run: repeat it to test significance", g.name))
		}
	}
	return notes
}

func appendUnique(dst []string, s string) []string {
	for _, d := range dst {
		if d == s {
			return dst
		}
	}
	return append(dst, s)
}

// Runs returns the merged runs of variant i, one per repeat, in run order,
// with their series decoded.
func (c *Comparison) Runs(i int) ([]*results.Run, error) {
	if i < 0 || i >= len(c.groups) {
		return nil, nil
	}
	g := c.groups[i]
	for j := range g.runs {
		if err := g.loadSeries(j); err != nil {
			return nil, err
		}
	}
	return g.runs, nil
}

// records returns every record the comparison was made from, shards
// included, in variant and run order.
func (c *Comparison) records() []*results.Run {
	var out []*results.Run
	for _, g := range c.groups {
		for _, src := range g.sources {
			out = append(out, src...)
		}
	}
	return out
}

// lateShardSlack is how long after --start-at a shard may begin its load
// before the report says the shards did not overlap.
const lateShardSlack = time.Second

// lateShards names the shards of a run that started their load well after
// the shared --start-at: their load did not overlap the others', so the
// merged rate understates what the run offered at once.
func lateShards(id string, recs []*results.Run) []string {
	var notes []string
	for _, r := range recs {
		at := r.Config.StartAt
		if r.Shard == nil || at.IsZero() || r.Start.Sub(at) <= lateShardSlack {
			continue
		}
		notes = append(notes, fmt.Sprintf("run %s: shard %d/%d started %v after --start-at %s: its load did not overlap the others'",
			id, r.Shard.Index, r.Shard.Count, r.Start.Sub(at).Round(time.Millisecond), at.Format(time.RFC3339)))
	}
	return notes
}
