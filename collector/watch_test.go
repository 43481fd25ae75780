package collector

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/closeload/closeload/report"
)

func TestWatcherRows(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ports []uint16
		rows  []uint16
	}{
		{"explicit ports", []uint16{8080, 22}, []uint16{22, 8080, 0}},
		{"listening ports found", nil, []uint16{22, 443, 8080, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := NewWatcher(WatchConfig{ProcRoot: "testdata/proc-ipv6", Source: SourceProc, Ports: tc.ports})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			f := w.Step()
			if f.Err != nil {
				t.Fatal(f.Err)
			}
			if len(f.Rows) != len(tc.rows) {
				t.Fatalf("rows %v, want ports %v", f.Rows, tc.rows)
			}
			for i, r := range f.Rows {
				if r.Port != tc.rows[i] {
					t.Fatalf("row %d is port %d, want %d", i, r.Port, tc.rows[i])
				}
			}
			row := func(p uint16) Counts {
				for _, r := range f.Rows {
					if r.Port == p {
						return r.Counts
					}
				}
				return Counts{}
			}
			c := row(8080)
			if c.Total[StateTimeWait] != 3 || c.Total[StateFinWait2] != 3 || c.Orphaned[StateFinWait2] != 2 || c.Total[StateListen] != 2 {
				t.Errorf("8080: %v", c.Map())
			}
			if c := row(22); c.Total[StateEstablished] != 1 || c.Total[StateListen] != 1 {
				t.Errorf("22: %v", c.Map())
			}
			if f.Rates != nil {
				t.Error("no rates on the first frame")
			}
		})
	}
}

func TestWatcherRatesAndOutput(t *testing.T) {
	root := copyTree(t, "testdata/proc-ipv6")
	w, err := NewWatcher(WatchConfig{ProcRoot: root, Source: SourceProc, Ports: []uint16{8080}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Step()
	snmp := filepath.Join(root, "net", "snmp")
	b := readFixture(t, snmp)
	os.WriteFile(snmp, []byte(strings.Replace(string(b), " 17 0\n", " 1017 0\n", 1)), 0o644) // OutRsts +1000
	time.Sleep(20 * time.Millisecond)
	f := w.Step()
	if r := f.Rates["Tcp.OutRsts"]; r <= 0 || r > 1000/0.02 {
		t.Fatalf("OutRsts rate %v", r)
	}
	var line, table strings.Builder
	report.WriteWatchLine(&line, f.Data())
	report.WriteWatchTable(&table, f.Data())
	if strings.Count(line.String(), "\n") != 1 {
		t.Errorf("line mode prints one line per interval:\n%s", line.String())
	}
	for _, want := range []string{" 8080: ", "TIME_WAIT=3", "FIN_WAIT2=3(orphaned=2)", "all:", "OutRsts="} {
		if !strings.Contains(line.String(), want) {
			t.Errorf("line lacks %q: %s", want, line.String())
		}
	}
	for _, want := range []string{"PORT", "TIME_WAIT", "3(2o)", "Tcp.OutRsts"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

func TestWatcherNotes(t *testing.T) {
	w, err := NewWatcher(WatchConfig{ProcRoot: "testdata/proc-noipv6", Source: SourceProc})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Step()
	if n := w.Notes(); len(n) != 1 || !strings.Contains(n[0], "tcp6") {
		t.Fatalf("notes %v", n)
	}
	w.Step()
	if n := w.Notes(); len(n) != 0 {
		t.Fatalf("notes repeated: %v", n)
	}
}
