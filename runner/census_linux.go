package runner

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/results"
	"github.com/closeload/closeload/sysctl"
)

// twBiasShare is the share of tcp_max_tw_buckets already taken at the
// start from which a run warns that the table will bias it.
const twBiasShare = 0.5

// takeCensus looks at what a run in a shared namespace starts among: the
// sockets already on its ports and the namespace's TIME_WAIT table. It
// returns the census and the notes a user must read (also printed).
func takeCensus(ports []uint16) (*results.Census, []string) {
	c := &results.Census{}
	var notes []string
	if states, err := collector.CountStates(collector.StateQuery{Ports: ports}); err == nil {
		delete(states, "LISTEN")
		if len(states) > 0 {
			c.Ports = states
			var n uint64
			var parts []string
			names := make([]string, 0, len(states))
			for k := range states {
				names = append(names, k)
			}
			sort.Strings(names)
			for _, k := range names {
				n += states[k].Total
				parts = append(parts, fmt.Sprintf("%s %d", k, states[k].Total))
			}
			notes = append(notes, fmt.Sprintf("%d sockets were already on the run's ports at the start (%s): the kernel's counts below include them", n, strings.Join(parts, ", ")))
		}
	}
	if cs, err := collector.ReadCounters(""); err == nil {
		c.TimeWait = cs["Sockstat.TCP.tw"]
	}
	if v, err := sysctl.Read(sysctl.DefaultProcRoot, "net.ipv4.tcp_max_tw_buckets"); err == nil {
		c.MaxTimeWait, _ = strconv.ParseInt(v, 10, 64)
	}
	if c.MaxTimeWait > 0 && float64(c.TimeWait) >= twBiasShare*float64(c.MaxTimeWait) {
		notes = append(notes, fmt.Sprintf("the namespace already held %d TIME_WAIT sockets of tcp_max_tw_buckets %d (%.0f%%) at the start: closes beyond the cap skip TIME_WAIT (TCPTimeWaitOverflow) and connect() searches longer for a port, so this run's rate is biased; run in a fresh namespace (the default with the built-in target) or wait for TIME_WAIT to drain (60 s)",
			c.TimeWait, c.MaxTimeWait, 100*float64(c.TimeWait)/float64(c.MaxTimeWait)))
	}
	return c, notes
}
