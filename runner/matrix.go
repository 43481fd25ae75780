package runner

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/closeload/closeload/results"
	"github.com/closeload/closeload/sysctl"
)

// Limits that keep a typo (--repeat 1000000) from queueing days of runs.
const (
	MaxMatrixVariants = 256
	MaxMatrixRepeat   = 100
	// MatrixIndexFile is the index a matrix writes beside its records.
	MatrixIndexFile = "index.json"
	// MatrixIndexSchema is bumped when the index changes meaning.
	MatrixIndexSchema = 1
)

// Sweep is one `--sysctl key=v1,v2` of a matrix: a key and the values to
// try, each a dimension of the cross product.
type Sweep struct {
	Key    string   `json:"key"`
	Values []string `json:"values"`
}

// Variant is one assignment of sysctls that a matrix runs.
type Variant struct {
	Index   int                 `json:"index"`
	Name    string              `json:"name"`
	Sysctls []sysctl.Assignment `json:"sysctls"`
	fromDim map[string]struct{} // keys, for conflict checks while expanding
}

// ParseSweep parses "key=v1,v2,...": the key is checked against the
// registry and every value against the key's range. Values may hold spaces
// ("1024 65000") but not commas.
func ParseSweep(spec string, allowUnknown bool) (Sweep, error) {
	k, vs, ok := strings.Cut(spec, "=")
	k = strings.TrimSpace(k)
	if !ok || k == "" {
		return Sweep{}, fieldErr("Sysctls", "%q: want KEY=V1[,V2...], e.g. net.ipv4.tcp_tw_reuse=0,1", spec)
	}
	if err := sysctl.CheckName(k, allowUnknown); err != nil {
		return Sweep{}, fieldErr("Sysctls", "%v", err)
	}
	s := Sweep{Key: k}
	seen := map[string]bool{}
	for _, v := range strings.Split(vs, ",") {
		nv, err := sysctl.NormalizeValue(k, v)
		if err != nil {
			return Sweep{}, fieldErr("Sysctls", "%q: %v", spec, err)
		}
		if seen[nv] {
			return Sweep{}, fieldErr("Sysctls", "%q: value %q given twice", spec, nv)
		}
		seen[nv] = true
		s.Values = append(s.Values, nv)
	}
	return s, nil
}

// ParseVariants reads a variants file: one variant per line, assignments
// separated by commas, an optional "name:" first; blank lines and lines
// starting with # are skipped.
//
//	baseline: net.ipv4.tcp_tw_reuse=2
//	reuse:    net.ipv4.tcp_tw_reuse=1, net.ipv4.tcp_tw_reuse_delay=100
//	net.ipv4.tcp_fin_timeout=15
func ParseVariants(r io.Reader, name string, allowUnknown bool) ([]Variant, error) {
	var out []Variant
	names := map[string]int{}
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		label := ""
		if before, after, ok := strings.Cut(text, ":"); ok && !strings.Contains(before, "=") {
			label, text = strings.TrimSpace(before), strings.TrimSpace(after)
			if label == "" || strings.ContainsAny(label, ",= \t") {
				return nil, fieldErr("Variants", "%s:%d: variant name %q: want a word before the colon", name, line, label)
			}
		}
		var specs []string
		for _, s := range strings.Split(text, ",") {
			if s = strings.TrimSpace(s); s != "" {
				specs = append(specs, s)
			}
		}
		if len(specs) == 0 {
			return nil, fieldErr("Variants", "%s:%d: no KEY=VALUE; a variant must set at least one key (for a baseline, give the default explicitly, e.g. net.ipv4.tcp_tw_reuse=2)", name, line)
		}
		as, err := sysctl.ParseAssignments(specs, allowUnknown)
		if err != nil {
			return nil, fieldErr("Variants", "%s:%d: %v", name, line, err)
		}
		if label == "" {
			label = variantName(as)
		}
		if prev, dup := names[label]; dup {
			return nil, fieldErr("Variants", "%s:%d: variant %q already on line %d", name, line, label, prev)
		}
		names[label] = line
		out = append(out, Variant{Name: label, Sysctls: as})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("variants file %s: %w", name, err)
	}
	if len(out) == 0 {
		return nil, fieldErr("Variants", "%s: no variants in the file", name)
	}
	return out, nil
}

// variantName is the default label: the assignments as the user types them.
func variantName(as []sysctl.Assignment) string {
	parts := make([]string, len(as))
	for i, a := range as {
		parts[i] = a.String()
	}
	return strings.Join(parts, ",")
}

// ExpandVariants returns the cross product of the file's variants (one
// dimension) and each sweep (one dimension each, the last varying
// fastest). A key set by two dimensions is an error: one would silently
// override the other.
func ExpandVariants(file []Variant, sweeps []Sweep) ([]Variant, error) {
	cur := []Variant{{}}
	if len(file) > 0 {
		cur = cur[:0]
		for _, v := range file {
			v.fromDim = keysOf(v.Sysctls)
			cur = append(cur, v)
		}
	}
	for _, s := range sweeps {
		next := make([]Variant, 0, len(cur)*len(s.Values))
		for _, v := range cur {
			if _, dup := v.fromDim[s.Key]; dup {
				return nil, fieldErr("Sysctls", "%s: the key is set twice (by another sweep or by {Variants}); give each key once", s.Key)
			}
			for _, val := range s.Values {
				as := append(append([]sysctl.Assignment(nil), v.Sysctls...), sysctl.Assignment{Key: s.Key, Value: val})
				name := s.Key + "=" + val
				if v.Name != "" {
					name = v.Name + "," + name
				}
				next = append(next, Variant{Name: name, Sysctls: as, fromDim: keysOf(as)})
			}
		}
		cur = next
		if len(cur) > MaxMatrixVariants {
			return nil, fieldErr("Sysctls", "%d variants or more; at most %d per matrix", len(cur), MaxMatrixVariants)
		}
	}
	if len(cur) == 1 && len(cur[0].Sysctls) == 0 {
		return nil, fieldErr("Sysctls", "none: a matrix needs variants; give {Sysctls} KEY=V1,V2 and/or {Variants} FILE")
	}
	for i := range cur {
		cur[i].Index = i
		cur[i].fromDim = nil
	}
	return cur, nil
}

func keysOf(as []sysctl.Assignment) map[string]struct{} {
	m := make(map[string]struct{}, len(as))
	for _, a := range as {
		m[a.Key] = struct{}{}
	}
	return m
}

// MatrixRun is one run of a matrix: which variant, which repeat, and where
// its record goes.
type MatrixRun struct {
	Variant     int       `json:"variant"`
	VariantName string    `json:"variant_name"`
	Repeat      int       `json:"repeat"`
	RunID       string    `json:"run_id"`
	File        string    `json:"file"` // relative to the matrix directory
	Log         string    `json:"log"`  // the child's standard output
	Status      string    `json:"status"`
	Error       string    `json:"error,omitempty"`
	ExitCode    int       `json:"exit_code"`
	Start       time.Time `json:"start,omitzero"`
	End         time.Time `json:"end,omitzero"`
}

// Status values of a MatrixRun.
const (
	RunPending     = "pending"
	RunOK          = "ok"
	RunFailed      = "failed"
	RunInterrupted = "interrupted"
)

// Schedule orders the runs interleaved: every variant once, then every
// variant again (A B A B, not A A B B), so slow drift of the machine (heat,
// other load, TIME_WAIT left by the previous run) spreads over all variants
// instead of landing on one.
func Schedule(matrixID string, variants []Variant, repeat int) []MatrixRun {
	runs := make([]MatrixRun, 0, len(variants)*repeat)
	for r := 0; r < repeat; r++ {
		for _, v := range variants {
			base := fmt.Sprintf("v%d-r%d", v.Index, r)
			runs = append(runs, MatrixRun{
				Variant: v.Index, VariantName: v.Name, Repeat: r,
				RunID: matrixID + "-" + base, File: base + ".json", Log: base + ".log",
				Status: RunPending,
			})
		}
	}
	return runs
}

// MatrixIndex is results/<matrix-id>/index.json: what the matrix was asked
// to do and what became of every run. It is rewritten after each run, so an
// interrupted matrix still says which records exist.
type MatrixIndex struct {
	Schema      int         `json:"schema"`
	Matrix      string      `json:"matrix"`
	Created     time.Time   `json:"created"`
	Finished    time.Time   `json:"finished,omitzero"`
	Args        []string    `json:"args"`
	Mode        string      `json:"mode"` // isolated or host
	Repeat      int         `json:"repeat"`
	Variants    []Variant   `json:"variants"`
	Runs        []MatrixRun `json:"runs"`
	Interrupted bool        `json:"interrupted"`
}

// MatrixOptions is a matrix: the run every variant makes, the variants,
// the repeats and where the records go.
type MatrixOptions struct {
	// ID names the matrix and its directory; NewMatrixID when empty.
	ID string
	// Dir is the results directory; records go to Dir/ID/.
	Dir      string
	Variants []Variant
	Repeat   int
	// Plan is the run each variant makes; its sysctls are the variant's,
	// its outputs and placement are set per run. With HostSysctl each
	// variant is applied to the host, journaled and restored after each
	// run; otherwise each run has a fresh network namespace.
	Plan Plan
	// Hlog asks every run for an HdrHistogram interval log beside its
	// record.
	Hlog bool
	// Args are the matrix's own command line, kept in the index.
	Args []string
	// Stdout gets one line per run; Stderr each run's warnings and live
	// line.
	Stdout, Stderr io.Writer
	// Summary, when set, renders a run's summary into its log file.
	Summary func(w io.Writer, r *results.Run)
}

// NewMatrixID returns a sortable, unique matrix id.
func NewMatrixID() string {
	return "matrix-" + time.Now().UTC().Format("20060102T150405Z") + "-" + strconv.Itoa(os.Getpid())
}

// Check validates a matrix before any run starts: repeat bounds, global
// keys in isolated mode, root for host mode, an external target without
// host mode, and the plan of every variant.
func (o *MatrixOptions) Check() error {
	if o.Repeat < 1 || o.Repeat > MaxMatrixRepeat {
		return fieldErr("Repeat", "%d: want 1 to %d", o.Repeat, MaxMatrixRepeat)
	}
	if len(o.Variants) == 0 {
		return fieldErr("Sysctls", "none: a matrix needs variants; give {Sysctls} KEY=V1,V2 and/or {Variants} FILE")
	}
	if o.ID != "" && !validRunID(o.ID) {
		return fieldErr("Matrix", "%q: no slashes or spaces", o.ID)
	}
	if o.Plan.HostSysctl {
		if os.Geteuid() != 0 {
			return fieldErr("HostSysctl", "%v", fmt.Errorf("%w: it changes the whole host's settings; run as root, or drop it to compare settings in isolated network namespaces (no root needed)", sysctl.ErrNotRoot))
		}
	} else if !o.Plan.Builtin() {
		return fieldErr("Target", "%s: isolated variants run in fresh network namespaces that cannot reach it; use {HostSysctl} (root) to compare settings against an external target", o.Plan.targetLabel())
	}
	for _, v := range o.Variants {
		if !o.Plan.HostSysctl {
			if err := sysctl.CheckIsolatable(v.Sysctls); err != nil {
				return fieldErr("Sysctls", "variant %s: %v", v.Name, err)
			}
		}
		p := o.runPlan("", MatrixRun{RunID: "matrix-check", File: "check.json"}, v)
		p.Out, p.Hlog = "", ""
		if err := p.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// runPlan is the plan of one run of the matrix.
func (o *MatrixOptions) runPlan(dir string, r MatrixRun, v Variant) Plan {
	p := o.Plan
	p.Sysctls = append([]sysctl.Assignment(nil), v.Sysctls...)
	p.RunID = r.RunID
	p.Out = filepath.Join(dir, r.File)
	p.Hlog = ""
	if o.Hlog {
		p.Hlog = filepath.Join(dir, strings.TrimSuffix(r.File, ".json")+".hlog")
	}
	p.Matrix, p.Variant, p.Repeat = filepath.Base(dir), v.Name, r.Repeat
	if !p.HostSysctl {
		p.Netns = NetnsIsolated
	}
	return p
}

// RunMatrix runs every variant Repeat times, interleaved, one run at a
// time, and returns the index and the records (nil where a run produced
// none). It stops early when ctx ends.
func RunMatrix(ctx context.Context, o MatrixOptions) (*MatrixIndex, []*results.Run, error) {
	if err := o.Check(); err != nil {
		return nil, nil, err
	}
	if o.ID == "" {
		o.ID = NewMatrixID()
	}
	if o.Dir == "" {
		o.Dir = "results"
	}
	stdout, stderr := o.Stdout, o.Stderr
	if stdout == nil {
		stdout = discard{}
	}
	if stderr == nil {
		stderr = discard{}
	}
	dir := filepath.Join(o.Dir, o.ID)
	if _, err := os.Stat(filepath.Join(dir, MatrixIndexFile)); err == nil {
		return nil, nil, fieldErr("Matrix", "%s: %s already holds a matrix; choose another id", o.ID, dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("matrix: %w", err)
	}
	idx := &MatrixIndex{
		Schema: MatrixIndexSchema, Matrix: o.ID, Created: time.Now().UTC(), Args: o.Args,
		Mode: sysctl.ModeIsolated, Repeat: o.Repeat, Variants: o.Variants,
		Runs: Schedule(o.ID, o.Variants, o.Repeat),
	}
	if o.Plan.HostSysctl {
		idx.Mode = sysctl.ModeHost
	}
	if err := writeIndex(dir, idx); err != nil {
		return nil, nil, err
	}
	recs := make([]*results.Run, len(idx.Runs))
	for i := range idx.Runs {
		r := &idx.Runs[i]
		if ctx.Err() != nil {
			idx.Interrupted = true
			break
		}
		v := o.Variants[r.Variant]
		fmt.Fprintf(stdout, "[%d/%d] %s  repeat %d ...", i+1, len(idx.Runs), v.Name, r.Repeat)
		rec := o.runOne(ctx, dir, r, v, stderr)
		recs[i] = rec
		if rec != nil {
			fmt.Fprintf(stdout, " %.0f cycles/s, %d errors%s\n", rec.Totals.Rate, results.ErrorTotal(rec.Totals.Errors), statusNote(r))
		} else {
			fmt.Fprintf(stdout, " %s: %s\n", r.Status, r.Error)
		}
		if r.Status == RunInterrupted || ctx.Err() != nil {
			idx.Interrupted = true
		}
		if werr := writeIndex(dir, idx); werr != nil {
			return idx, recs, werr
		}
		if idx.Interrupted {
			break
		}
	}
	idx.Finished = time.Now().UTC()
	if err := writeIndex(dir, idx); err != nil {
		return idx, recs, err
	}
	var failed []string
	for _, r := range idx.Runs {
		if r.Status == RunFailed {
			failed = append(failed, r.RunID)
		}
	}
	if len(failed) > 0 {
		return idx, recs, fmt.Errorf("matrix %s: %d of %d runs failed (%s); see %s", o.ID, len(failed), len(idx.Runs), strings.Join(failed, ", "), filepath.Join(dir, MatrixIndexFile))
	}
	if idx.Interrupted {
		if cause := context.Cause(ctx); cause != nil {
			return idx, recs, cause
		}
	}
	return idx, recs, nil
}

func statusNote(r *MatrixRun) string {
	if r.Status == RunOK {
		return ""
	}
	return "  (" + r.Status + ")"
}

// runOne makes one run of the matrix, writes its summary to its log and
// notes its status in r.
func (o *MatrixOptions) runOne(ctx context.Context, dir string, r *MatrixRun, v Variant, stderr io.Writer) *results.Run {
	p := o.runPlan(dir, *r, v)
	r.Start = time.Now().UTC()
	rec, err := Run(ctx, &p, Output{Stdout: discard{}, Stderr: stderr, Progress: true})
	r.End = time.Now().UTC()
	r.ExitCode = ExitCode(rec, err)
	switch {
	case rec != nil && rec.Verdict != nil && rec.Verdict.Status == results.VerdictInterrupted:
		r.Status, r.Error = RunInterrupted, rec.InterruptReason
	case err != nil:
		r.Status, r.Error = RunFailed, err.Error()
	case rec == nil:
		r.Status, r.Error = RunFailed, "no record"
	case rec.Verdict != nil && rec.Verdict.Status == results.VerdictFailed:
		r.Status, r.Error = RunFailed, strings.Join(rec.Verdict.Reasons, "; ")
	default:
		r.Status = RunOK
	}
	if rec != nil && r.Status != RunFailed {
		if err := checkPlacement(rec, filepath.Base(dir), *r, v); err != nil {
			r.Status, r.Error = RunFailed, err.Error()
		}
	}
	if o.Summary != nil && rec != nil {
		if f, err := os.Create(filepath.Join(dir, r.Log)); err == nil {
			o.Summary(f, rec)
			f.Close()
		}
	}
	return rec
}

// checkPlacement makes sure the record is the run the matrix asked for:
// placed in the matrix, with the variant's values applied and still in
// effect at the end.
func checkPlacement(rec *results.Run, matrixID string, r MatrixRun, v Variant) error {
	if rec.Matrix != matrixID || rec.Variant != v.Name || rec.Repeat != r.Repeat || rec.ID != r.RunID {
		return fmt.Errorf("record %s is not run %s of matrix %s (says matrix %q variant %q repeat %d)", r.File, r.RunID, matrixID, rec.Matrix, rec.Variant, rec.Repeat)
	}
	for _, a := range v.Sysctls {
		if rec.Sysctls.Applied[a.Key] != a.Value {
			return fmt.Errorf("record %s: %s applied as %q, want %q", r.File, a.Key, rec.Sysctls.Applied[a.Key], a.Value)
		}
		if got, ok := rec.Sysctls.After[a.Key]; ok && got != a.Value {
			return fmt.Errorf("record %s: %s was %q at the end of the run, not the variant's %q", r.File, a.Key, got, a.Value)
		}
	}
	return nil
}

func writeIndex(dir string, idx *MatrixIndex) error {
	data, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	return results.WriteOutput(filepath.Join(dir, MatrixIndexFile), append(data, '\n'))
}

// ReadMatrixIndex reads results/<matrix-id>/index.json.
func ReadMatrixIndex(path string) (*MatrixIndex, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var idx MatrixIndex
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if idx.Schema != MatrixIndexSchema {
		return nil, fmt.Errorf("%s: matrix index schema %d, this closeload reads %d", path, idx.Schema, MatrixIndexSchema)
	}
	return &idx, nil
}
