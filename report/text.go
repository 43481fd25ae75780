package report

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// grid lays a table out as strings: a metric column, then per variant its
// value column and, for all but the baseline, a "vs base" column.
func (c *Comparison) grid(t Table) (header []string, rows [][]string) {
	header = []string{"metric"}
	for i, v := range c.Variants {
		header = append(header, v.Name)
		if i != c.Baseline {
			header = append(header, "vs base")
		}
	}
	for _, r := range t.Rows {
		line := []string{r.Metric}
		base := r.Cells[c.Baseline]
		for i, cell := range r.Cells {
			line = append(line, formatCell(cell, r.Unit))
			if i != c.Baseline {
				line = append(line, formatVs(cell, base, r.Unit))
			}
		}
		rows = append(rows, line)
	}
	return header, rows
}

// WriteText writes the comparison as aligned plain-text tables, the default
// output of closeload report and the end of closeload matrix.
func (c *Comparison) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, c.headline())
	fmt.Fprintln(bw, c.method())
	if cfg := c.sharedConfig(); cfg != "" {
		fmt.Fprintln(bw, "config:", cfg)
	}
	c.writeVariantList(bw, "")
	for _, t := range c.Tables {
		fmt.Fprintln(bw)
		fmt.Fprintln(bw, c.tableTitle(t))
		tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
		header, rows := c.grid(t)
		fmt.Fprintln(tw, strings.Join(header, "\t"))
		for _, r := range rows {
			fmt.Fprintln(tw, strings.Join(r, "\t"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	notes := append(c.advice(), c.allNotes()...)
	if len(notes) > 0 {
		fmt.Fprintln(bw)
		fmt.Fprintln(bw, "notes:")
		for _, n := range notes {
			fmt.Fprintln(bw, "  - "+n)
		}
	}
	return bw.Flush()
}

// writeVariantList names each variant's runs, and its configuration when
// the variants differ in it.
func (c *Comparison) writeVariantList(w io.Writer, bullet string) {
	shared := c.sharedConfig() != ""
	for i, v := range c.Variants {
		ids := make([]string, len(v.Runs))
		for j, r := range v.Runs {
			ids[j] = r.ID
			if r.Shards > 0 {
				ids[j] += fmt.Sprintf(" (%d shards", r.Shards)
				if len(r.Missing) > 0 {
					ids[j] += fmt.Sprintf(", %d missing", len(r.Missing))
				}
				ids[j] += ")"
			}
		}
		role := ""
		if i == c.Baseline {
			role = " (baseline)"
		}
		line := fmt.Sprintf("%svariant %s%s: %d run(s): %s", bullet, v.Name, role, len(v.Runs), strings.Join(ids, ", "))
		if !shared {
			line += "; " + v.Config
		}
		fmt.Fprintln(w, line)
	}
}

// WriteMarkdown writes the comparison as GitHub-flavoured Markdown tables,
// for pull requests and issues.
func (c *Comparison) WriteMarkdown(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "## %s\n\n", mdEscape(c.headline()))
	fmt.Fprintf(bw, "%s\n\n", mdEscape(c.method()))
	if cfg := c.sharedConfig(); cfg != "" {
		fmt.Fprintf(bw, "Config: %s\n\n", mdEscape(cfg))
	}
	var sb strings.Builder
	c.writeVariantList(&sb, "- ")
	fmt.Fprintf(bw, "%s\n", mdEscape(sb.String()))
	for _, t := range c.Tables {
		fmt.Fprintf(bw, "### %s\n\n", mdEscape(c.tableTitle(t)))
		header, rows := c.grid(t)
		fmt.Fprintf(bw, "| %s |\n", strings.Join(mdEscapeAll(header), " | "))
		align := make([]string, len(header))
		for i := range align {
			switch {
			case i == 0:
				align[i] = ":---"
			case header[i] == "vs base":
				align[i] = ":---"
			default:
				align[i] = "---:"
			}
		}
		fmt.Fprintf(bw, "|%s|\n", strings.Join(align, "|"))
		for _, r := range rows {
			fmt.Fprintf(bw, "| %s |\n", strings.Join(mdEscapeAll(r), " | "))
		}
		fmt.Fprintln(bw)
	}
	notes := append(c.advice(), c.allNotes()...)
	if len(notes) > 0 {
		fmt.Fprintf(bw, "Notes:\n\n")
		for _, n := range notes {
			fmt.Fprintf(bw, "- %s\n", mdEscape(n))
		}
	}
	return bw.Flush()
}

var mdReplacer = strings.NewReplacer("|", `\|`, "*", `\*`, "_", `\_`, "<", "&lt;", ">", "&gt;", "~", `\~`)

func mdEscape(s string) string { return mdReplacer.Replace(s) }

func mdEscapeAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = mdEscape(s)
	}
	return out
}
