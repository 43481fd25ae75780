package report

import (
	"bytes"
	"fmt"
	"html/template"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/closeload/closeload/results"
)

// WriteHTML writes dir/index.html: one self-contained page with the
// comparison tables, every plot inlined as SVG, the notes, and the
// provenance and sysctls of every run. It loads nothing from the network
// or from other files, so it opens from disk and can be mailed or archived
// as is. runs lists the records to describe (shards included); nil means
// the records the comparison was made from.
func WriteHTML(dir string, c *Comparison, runs []*results.Run) error {
	if runs == nil {
		runs = c.records()
	}
	page, err := c.htmlPage(runs)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := pageTemplate.Execute(&b, page); err != nil {
		return fmt.Errorf("html: %w", err)
	}
	return results.WriteOutput(filepath.Join(dir, "index.html"), b.Bytes())
}

type htmlPage struct {
	Title    string
	Headline string
	Method   string
	Config   string
	Variants []htmlVariant
	Tables   []htmlTable
	// Lead holds the figures that answer the question (headline, kernel);
	// Plots the ones over time and by percentile.
	Lead  []htmlPlot
	Plots []htmlPlot
	Notes []string
	Runs  []htmlRun
}

type htmlVariant struct {
	Name, Role, Config string
	Runs               []string
	Color              string
}

type htmlTable struct {
	Title  string
	Header []string
	Rows   [][]htmlCell
}

type htmlCell struct {
	Text, Class, Title string
}

type htmlPlot struct {
	Name, Title string
	SVG         template.HTML
}

type htmlRun struct {
	ID, Shard, Variant, Repeat, Start, Measured, Host, Kernel, Version, Go, CPU, Namespace, Mode, Interrupted string
	Config                                                                                                    string
	Args                                                                                                      string
	Sysctls                                                                                                   [][4]string
	Collector                                                                                                 string
}

var svgHeader = regexp.MustCompile(`(?s)^.*?<svg `)

func (c *Comparison) htmlPage(runs []*results.Run) (*htmlPage, error) {
	p := &htmlPage{Title: "closeload report", Headline: c.headline(), Method: c.method(), Config: c.sharedConfig()}
	shared := p.Config != ""
	for i, v := range c.Variants {
		hv := htmlVariant{Name: v.Name, Color: colorHex(i)}
		if i == c.Baseline {
			hv.Role = "baseline"
		}
		if !shared {
			hv.Config = v.Config
		}
		for _, r := range v.Runs {
			s := r.ID
			if r.Shards > 0 {
				s += fmt.Sprintf(" (%d shards, %d missing)", r.Shards, len(r.Missing))
			}
			hv.Runs = append(hv.Runs, s)
		}
		p.Variants = append(p.Variants, hv)
	}
	for _, t := range c.Tables {
		ht := htmlTable{Title: c.tableTitle(t)}
		header, _ := c.grid(t)
		ht.Header = header
		for _, r := range t.Rows {
			row := []htmlCell{{Text: r.Metric, Class: "metric", Title: r.Unit}}
			base := r.Cells[c.Baseline]
			for i, cell := range r.Cells {
				row = append(row, htmlCell{Text: formatCell(cell, r.Unit), Class: "num", Title: valuesTitle(cell, r.Unit)})
				if i == c.Baseline {
					continue
				}
				cls := "vs"
				switch {
				case cell.Verdict == VerdictSignificant && cell.Direction == "better":
					cls += " better"
				case cell.Verdict == VerdictSignificant && cell.Direction == "worse":
					cls += " worse"
				case cell.Verdict == VerdictSignificant:
					cls += " changed"
				case cell.Verdict == VerdictTooFew:
					cls += " few"
				}
				row = append(row, htmlCell{Text: formatVs(cell, base, r.Unit), Class: cls})
			}
			ht.Rows = append(ht.Rows, row)
		}
		p.Tables = append(p.Tables, ht)
	}
	plots, err := c.Plots()
	if err != nil {
		return nil, err
	}
	for _, pl := range plots {
		var b bytes.Buffer
		if err := pl.WriteSVG(&b); err != nil {
			return nil, fmt.Errorf("plot %s: %w", pl.Name, err)
		}
		svg := svgHeader.ReplaceAllLiteralString(b.String(), `<svg class="plot" role="img" aria-label="`+template.HTMLEscapeString(pl.Title)+`" `)
		hp := htmlPlot{Name: pl.Name, Title: pl.Title, SVG: template.HTML(svg)}
		if pl.Name == "headline" || pl.Name == "kernel" {
			p.Lead = append(p.Lead, hp)
		} else {
			p.Plots = append(p.Plots, hp)
		}
	}
	p.Notes = append(c.advice(), c.allNotes()...)
	variantOf := map[string]string{}
	for _, g := range c.groups {
		for _, r := range g.runs {
			variantOf[r.ID] = g.name
		}
	}
	for _, r := range runs {
		p.Runs = append(p.Runs, describeRun(r, variantOf[r.ID]))
	}
	return p, nil
}

func valuesTitle(c Cell, unit string) string {
	vs := make([]string, len(c.Values))
	for i, v := range c.Values {
		vs[i] = formatValue(v, unit)
	}
	return "repeats: " + strings.Join(vs, ", ")
}

func colorHex(i int) string {
	r, g, b, _ := variantColor(i).RGBA()
	return fmt.Sprintf("#%02x%02x%02x", r>>8, g>>8, b>>8)
}

func describeRun(r *results.Run, variant string) htmlRun {
	pv := r.Provenance
	h := htmlRun{
		ID: r.ID, Variant: variant, Repeat: fmt.Sprint(r.Repeat),
		Start: r.Start.UTC().Format(time.RFC3339), Measured: fmt.Sprintf("%.1fs", r.MeasuredSeconds),
		Host: pv.Hostname, Kernel: pv.Kernel, Version: pv.Version, Go: pv.GoVersion,
		CPU: fmt.Sprintf("%d cores, GOMAXPROCS %d", pv.Cores, pv.GOMAXPROCS), Namespace: pv.Namespace, Mode: r.Sysctls.Mode,
		Config: describeConfig(r.Config), Args: strings.Join(pv.Args, " "),
	}
	if r.Shard != nil {
		h.Shard = fmt.Sprintf("%d/%d", r.Shard.Index, r.Shard.Count)
	}
	if r.Interrupted {
		h.Interrupted = "interrupted: " + r.InterruptReason
	}
	keys := map[string]bool{}
	for _, m := range []map[string]string{r.Sysctls.Before, r.Sysctls.Applied, r.Sysctls.After} {
		for k := range m {
			keys[k] = true
		}
	}
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		h.Sysctls = append(h.Sysctls, [4]string{k, r.Sysctls.Before[k], r.Sysctls.Applied[k], r.Sysctls.After[k]})
	}
	if col := r.Collector; col != nil {
		h.Collector = fmt.Sprintf("%s: %d samples, %d missed, mean cost %s, max %s", col.Source, col.Samples, col.Missed,
			formatNs(float64(col.MeanCostNs)), formatNs(float64(col.MaxCostNs)))
		if col.Throttled > 0 {
			h.Collector += fmt.Sprintf(", %d throttled", col.Throttled)
		}
		if col.FallbackReason != "" {
			h.Collector += "; fallback: " + col.FallbackReason
		}
		if len(col.Errors) > 0 {
			h.Collector += "; errors: " + strings.Join(col.Errors, "; ")
		}
	}
	return h
}

var pageTemplate = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1em 0; padding: 0 max(1em, 2vw); color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
p.method, p.config { color: #555; margin: 0.3em 0; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { padding: 0.2em 0.7em; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
th { background: #f5f5f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.vs { white-space: nowrap; color: #444; }
td.better { color: #116611; font-weight: 600; }
td.worse { color: #b00020; font-weight: 600; }
td.changed { font-weight: 600; }
td.few { color: #888; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; border-radius: 2px; vertical-align: middle; margin-right: 0.4em; }
figure { margin: 1.2em 0; }
figcaption { color: #555; font-size: 0.95em; }
svg.plot { display: block; width: 100%; max-width: 1600px; height: auto; border: 1px solid #eee; }
div.scroll { overflow-x: auto; }
ul.notes li { margin: 0.2em 0; }
details { margin: 0.4em 0; }
summary { cursor: pointer; }
code { font-size: 0.95em; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<p>{{.Headline}}</p>
<p class="method">{{.Method}}</p>
{{if .Config}}<p class="config">config: {{.Config}}</p>{{end}}
{{range .Lead}}<figure id="{{.Name}}">
{{.SVG}}
<figcaption>{{.Title}}</figcaption>
</figure>
{{end}}
<h2>Over time and by percentile</h2>
{{range .Plots}}<figure id="{{.Name}}">
{{.SVG}}
<figcaption>{{.Title}}</figcaption>
</figure>
{{end}}
<h2>Variants</h2>
<ul>
{{range .Variants}}<li><span class="swatch" style="background: {{.Color}}"></span><strong>{{.Name}}</strong>{{if .Role}} ({{.Role}}){{end}}: {{len .Runs}} run(s){{if .Config}}; {{.Config}}{{end}}<br><small>{{range $i, $r := .Runs}}{{if $i}}, {{end}}{{$r}}{{end}}</small></li>
{{end}}</ul>
{{if .Notes}}<h2>Notes</h2>
<ul class="notes">
{{range .Notes}}<li>{{.}}</li>
{{end}}</ul>{{end}}
<h2>Comparison</h2>
{{range .Tables}}<h3>{{.Title}}</h3>
<div class="scroll"><table>
<thead><tr>{{range .Header}}<th>{{.}}</th>{{end}}</tr></thead>
<tbody>
{{range .Rows}}<tr>{{range .}}<td class="{{.Class}}"{{if .Title}} title="{{.Title}}"{{end}}>{{.Text}}</td>{{end}}</tr>
{{end}}</tbody>
</table></div>
{{end}}
<h2>Runs</h2>
<div class="scroll"><table>
<thead><tr><th>run</th><th>shard</th><th>variant</th><th>repeat</th><th>start (UTC)</th><th>measured</th><th>host</th><th>kernel</th><th>closeload</th><th>namespace</th><th>sysctl mode</th></tr></thead>
<tbody>
{{range .Runs}}<tr><td>{{.ID}}</td><td>{{.Shard}}</td><td>{{.Variant}}</td><td>{{.Repeat}}</td><td>{{.Start}}</td><td>{{.Measured}}{{if .Interrupted}} <strong>{{.Interrupted}}</strong>{{end}}</td><td>{{.Host}}</td><td>{{.Kernel}}</td><td>{{.Version}}</td><td>{{.Namespace}}</td><td>{{.Mode}}</td></tr>
{{end}}</tbody>
</table></div>
{{range .Runs}}<details>
<summary>{{.ID}}{{if .Shard}} shard {{.Shard}}{{end}}: provenance and sysctls</summary>
<p>{{.Config}}<br>{{.Go}}, {{.CPU}}<br>command: <code>{{.Args}}</code>{{if .Collector}}<br>collector: {{.Collector}}{{end}}</p>
{{if .Sysctls}}<table>
<thead><tr><th>sysctl</th><th>before</th><th>applied</th><th>after</th></tr></thead>
<tbody>
{{range .Sysctls}}<tr><td>{{index . 0}}</td><td>{{index . 1}}</td><td>{{index . 2}}</td><td>{{index . 3}}</td></tr>
{{end}}</tbody>
</table>{{end}}
</details>
{{end}}
</body>
</html>
`))
