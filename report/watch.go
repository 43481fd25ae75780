package report

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/closeload/closeload/results"
)

// WriteWatchTable prints a watch frame as a table, for a terminal refreshed
// in place. FIN_WAIT2 shows its orphans in parentheses.
func WriteWatchTable(w io.Writer, f results.WatchFrame) {
	fmt.Fprintf(w, "closeload watch  %s  source %s\n\n", f.T.Format("15:04:05"), f.Source)
	fmt.Fprintf(w, "%-6s", "PORT")
	if len(f.Rows) > 0 {
		for _, st := range f.Rows[0].States {
			fmt.Fprintf(w, " %12s", st.State)
		}
	}
	fmt.Fprintln(w)
	for _, r := range f.Rows {
		fmt.Fprintf(w, "%-6s", watchPort(r.Port))
		for _, st := range r.States {
			v := fmt.Sprint(st.Total)
			if st.State == "FIN_WAIT2" && st.Orphaned > 0 {
				v = fmt.Sprintf("%d(%do)", st.Total, st.Orphaned)
			}
			fmt.Fprintf(w, " %12s", v)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	if f.Rates == nil {
		fmt.Fprintln(w, "counter rates: from the next refresh")
	} else {
		fmt.Fprintln(w, "counters per second:")
		for i, r := range f.Rates {
			fmt.Fprintf(w, "  %-26s %10.1f", r.Counter, r.PerSecond)
			if i%2 == 1 {
				fmt.Fprintln(w)
			}
		}
		if len(f.Rates)%2 == 1 {
			fmt.Fprintln(w)
		}
	}
	if len(f.Events) > 0 {
		fmt.Fprintf(w, "\nkernel events per second (eBPF):\n%-6s %12s %12s %12s %12s\n", "PORT", "transitions", "RST sent", "RST received", "to TIME_WAIT")
		for _, e := range f.Events {
			fmt.Fprintf(w, "%-6d %12.1f %12.1f %12.1f %12.1f\n", e.Port, e.Transitions, e.ResetsSent, e.ResetsReceived, e.TimeWaitHandovers)
		}
	}
	if f.Err != "" {
		fmt.Fprintf(w, "\nerror: %s\n", f.Err)
	}
	fmt.Fprintln(w, "\n(o) = orphaned, no file descriptor: reaped by tcp_fin_timeout. Ctrl-C ends.")
}

func watchPort(p uint16) string {
	if p == 0 {
		return "all"
	}
	return fmt.Sprint(p)
}

// WriteWatchLine prints a watch frame as one line, for logs and pipes: the
// non-zero states of each row, then the non-zero counter rates.
func WriteWatchLine(w io.Writer, f results.WatchFrame) {
	var b strings.Builder
	b.WriteString(f.T.Format(time.RFC3339))
	for _, r := range f.Rows {
		fmt.Fprintf(&b, " %s:", watchPort(r.Port))
		n := 0
		for _, st := range r.States {
			if st.Total > 0 {
				fmt.Fprintf(&b, " %s=%d", st.State, st.Total)
				if st.Orphaned > 0 {
					fmt.Fprintf(&b, "(orphaned=%d)", st.Orphaned)
				}
				n++
			}
		}
		if n == 0 {
			b.WriteString(" none")
		}
		b.WriteString(";")
	}
	if f.Rates != nil {
		b.WriteString(" rates/s:")
		n := 0
		for _, r := range f.Rates {
			if r.PerSecond != 0 {
				fmt.Fprintf(&b, " %s=%.1f", r.Counter[strings.IndexByte(r.Counter, '.')+1:], r.PerSecond)
				n++
			}
		}
		if n == 0 {
			b.WriteString(" all 0")
		}
	}
	for _, e := range f.Events {
		fmt.Fprintf(&b, " events/s %d: transitions=%.1f rst_sent=%.1f rst_received=%.1f to_time_wait=%.1f;",
			e.Port, e.Transitions, e.ResetsSent, e.ResetsReceived, e.TimeWaitHandovers)
	}
	if f.Err != "" {
		fmt.Fprintf(&b, " error=%q", f.Err)
	}
	b.WriteByte('\n')
	io.WriteString(w, b.String())
}

// WriteWatchJSON prints a watch frame as one JSON line (JSON Lines), for
// pipelines (jq, a log shipper).
func WriteWatchJSON(w io.Writer, f results.WatchFrame) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
