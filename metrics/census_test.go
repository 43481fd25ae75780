package metrics_test

import (
	"maps"
	"net"
	"testing"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/metrics"
)

func TestCensusCountsAListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	c, err := metrics.OpenCensus(collector.StateQuery{Ports: []uint16{port}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var l metrics.Live
	if err := c.Fill(&l, metrics.SideTarget); err != nil {
		t.Fatal(err)
	}
	if got := l.States[metrics.SideTarget]["LISTEN"]; got != 1 {
		t.Errorf("LISTEN on port %d: %d sockets, want 1 (states %v)", port, got, l.States)
	}
}

func TestFromWatch(t *testing.T) {
	var row, all collector.Counts
	row.Total[collector.StateTimeWait] = 5
	all.Total[collector.StateTimeWait] = 7
	all.Total[collector.StateFinWait2] = 2
	all.Orphaned[collector.StateFinWait2] = 1
	l := metrics.FromWatch(collector.WatchFrame{Rows: []collector.WatchRow{{Port: 80, Counts: row}, {Port: 0, Counts: all}}})
	if len(l.Ports) != 1 || l.Ports[0].Port != 80 || !maps.Equal(l.Ports[0].States, map[string]uint64{"TIME_WAIT": 5}) {
		t.Errorf("ports %+v, want port 80 with TIME_WAIT 5", l.Ports)
	}
	if !maps.Equal(l.States[metrics.SideAll], map[string]uint64{"TIME_WAIT": 7, "FIN_WAIT2": 2}) {
		t.Errorf("all states %v", l.States)
	}
	if !maps.Equal(l.Orphans[metrics.SideAll], map[string]uint64{"FIN_WAIT2": 1}) {
		t.Errorf("all orphans %v", l.Orphans)
	}
}
