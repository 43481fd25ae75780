package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/closeload/closeload/internal/nstest"
	"github.com/closeload/closeload/results"
)

// TestPrefilledTimeWait fills a namespace's TIME_WAIT table (capped low in
// the namespace) before a run in that namespace: the run warns that the
// table will bias it, records the census, and shows how much of its peak
// was there before.
func TestPrefilledTimeWait(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		if err := os.WriteFile("/proc/sys/net/ipv4/tcp_max_tw_buckets", []byte("400\n"), 0); err != nil {
			t.Fatal(err)
		}
		addr := answeringServer(t, 0, "")
		for range 300 { // the client closes first: 300 TIME_WAIT on the listener's port
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
		}
		out := filepath.Join(t.TempDir(), "r.json")
		code, stdout, stderr := run(t, "run", "--target", addr, "-s", "full-close", "-c", "1", "--cycles", "20", "--response-size", "0", "--interval", "50ms", "--out", out)
		if !strings.Contains(stderr, "already held") || !strings.Contains(stderr, "TIME_WAIT") {
			t.Errorf("no warning of the full TIME_WAIT table (exit %d):\n%s", code, stderr)
		}
		r, err := results.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		c := r.Census
		if c == nil || c.TimeWait < 250 || c.MaxTimeWait != 400 || c.Ports["TIME_WAIT"].Total < 250 {
			t.Fatalf("census %+v, want the 300 TIME_WAIT and the cap of 400", c)
		}
		if !strings.Contains(stdout, "there before the run") {
			t.Errorf("summary does not set the earlier sockets apart:\n%s", stdout)
		}
	})
}
