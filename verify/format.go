package verify

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"
	"text/tabwriter"

	"golang.org/x/sys/unix"
)

// Report is a whole verify run, as --format json writes it.
type Report struct {
	Kernel    string   `json:"kernel"`
	GoVersion string   `json:"go_version"`
	Cores     int      `json:"cores"`
	Seconds   float64  `json:"seconds"`
	Results   []Result `json:"results"`
}

// NewReport wraps results with the machine they were measured on.
func NewReport(rs []Result, seconds float64) Report {
	r := Report{GoVersion: runtime.Version(), Cores: runtime.NumCPU(), Seconds: roundTo(seconds, 0.1), Results: rs}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		r.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	return r
}

// Formats are the accepted values of --format.
var Formats = []string{"text", "markdown", "json"}

// Write renders the report in one of Formats.
func Write(w io.Writer, format string, rep Report) error {
	switch format {
	case "text":
		return WriteText(w, rep)
	case "markdown":
		return WriteMarkdown(w, rep)
	case "json":
		e := json.NewEncoder(w)
		e.SetIndent("", "  ")
		return e.Encode(rep)
	}
	return fmt.Errorf("unknown format %q; accepted: %s", format, strings.Join(Formats, ", "))
}

// WriteText prints the verdict table, then each claim's finding, evidence
// and the command that reproduces it.
func WriteText(w io.Writer, rep Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CLAIM\tVERDICT")
	for _, r := range rep.Results {
		fmt.Fprintf(tw, "%s\t%s\n", r.Claim, r.VerdictText())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rep.Results {
		fmt.Fprintf(w, "\n%s — %s\n  claim: %s\n  source: %s\n  finding: %s\n", r.Claim, r.VerdictText(), r.Statement, r.Source, r.Finding)
		for _, e := range r.Evidence {
			fmt.Fprintf(w, "  %s: %s\n", e.What, e.Value)
		}
		if r.Error != "" {
			fmt.Fprintf(w, "  error: %s\n", r.Error)
		}
		where := ""
		if r.Namespace != "" {
			where = ", " + r.Namespace
		}
		fmt.Fprintf(w, "  reproduce: %s   (%.1f s%s)\n", r.Command, r.Seconds, where)
	}
	_, err := fmt.Fprintf(w, "\n%d claims in %.1f s (kernel %s, %d cores)\n", len(rep.Results), rep.Seconds, rep.Kernel, rep.Cores)
	return err
}

// WriteMarkdown prints one table row per claim, evidence included, for docs.
func WriteMarkdown(w io.Writer, rep Report) error {
	fmt.Fprintf(w, "Measured on Linux %s, %d cores, %s; %d claims in %.0f s.\n\n", rep.Kernel, rep.Cores, rep.GoVersion, len(rep.Results), rep.Seconds)
	fmt.Fprintln(w, "| # | Claim | Verdict | Evidence | Reproduce |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for i, r := range rep.Results {
		var ev []string
		ev = append(ev, mdCell(r.Finding))
		for _, e := range r.Evidence {
			ev = append(ev, mdCell(e.What)+": "+mdCell(e.Value))
		}
		if r.Error != "" {
			ev = append(ev, "error: "+mdCell(r.Error))
		}
		_, err := fmt.Fprintf(w, "| %d | **%s**: %s (%s) | %s | %s | `%s` |\n",
			i+1, r.Claim, mdCell(r.Statement), mdCell(r.Source), mdCell(r.VerdictText()), strings.Join(ev, "<br>"), r.Command)
		if err != nil {
			return err
		}
	}
	return nil
}

// mdCell makes text safe inside a markdown table cell.
func mdCell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

func roundTo(v, step float64) float64 {
	return float64(int64(v/step+0.5)) * step
}
