package report

import (
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"sync"

	"github.com/closeload/closeload/results"
)

// plotSample is the part of a sample the plots draw. Decoding a long
// series into it skips the kernel counters and the state maps, most of the
// cost of decoding a sample: plots of a 200 MB record take seconds.
type plotSample struct {
	Elapsed float64    `json:"elapsed_s"`
	States  plotStates `json:"states"`
	Cycles  uint64     `json:"cycles"`
	Errors  uint64     `json:"errors"`
	// Sides splits States by side of the connection ("client", "target")
	// when the record has the split.
	Sides map[string]plotStates `json:"sides"`
	// NoStates is set when the sample's states were not counted.
	NoStates bool     `json:"-"`
	Missing  []string `json:"missing"`
}

// sideOrder is the order sides are drawn in, left to right.
var sideOrder = []string{"client", "target"}

// plotStates holds the timeline's states by name, as a record spells them.
type plotStates struct {
	TimeWait    results.StateCount `json:"TIME_WAIT"`
	FinWait2    results.StateCount `json:"FIN_WAIT2"`
	CloseWait   results.StateCount `json:"CLOSE_WAIT"`
	Established results.StateCount `json:"ESTABLISHED"`
	FinWait1    results.StateCount `json:"FIN_WAIT1"`
	Closing     results.StateCount `json:"CLOSING"`
	LastAck     results.StateCount `json:"LAST_ACK"`
	SynSent     results.StateCount `json:"SYN_SENT"`
	SynRecv     results.StateCount `json:"SYN_RECV"`
}

// get returns a state's count by its name; the names are timelineStates.
func (s *plotStates) get(name string) results.StateCount {
	switch name {
	case "TIME_WAIT":
		return s.TimeWait
	case "FIN_WAIT2":
		return s.FinWait2
	case "CLOSE_WAIT":
		return s.CloseWait
	case "ESTABLISHED":
		return s.Established
	case "FIN_WAIT1":
		return s.FinWait1
	case "CLOSING":
		return s.Closing
	case "LAST_ACK":
		return s.LastAck
	case "SYN_SENT":
		return s.SynSent
	case "SYN_RECV":
		return s.SynRecv
	}
	return results.StateCount{}
}

// plotRun is one repeat's series as the plots draw it.
type plotRun struct {
	samples []plotSample
	// interval is the sampling interval in seconds (0: unknown).
	interval float64
}

// plotRuns returns every repeat's series for plotting, per variant,
// decoding series still held as JSON in parallel, without keeping the full
// samples.
func (c *Comparison) plotRuns() ([][]plotRun, bool, error) {
	if c.plotCache != nil {
		return c.plotCache, c.plotHave, nil
	}
	out := make([][]plotRun, len(c.groups))
	type job struct{ vi, ri int }
	var jobs []job
	for vi, g := range c.groups {
		out[vi] = make([]plotRun, len(g.runs))
		for ri := range g.runs {
			jobs = append(jobs, job{vi, ri})
		}
	}
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(runtime.GOMAXPROCS(0), len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				j := jobs[i]
				g := c.groups[j.vi]
				r := g.runs[j.ri]
				pr := plotRun{interval: r.Config.Interval.Seconds()}
				raw := json.RawMessage(nil)
				if j.ri < len(g.series) {
					raw = g.series[j.ri]
				}
				if raw == nil && len(r.Series) > 0 {
					// Decoded already (a shard merge needed it): one way to
					// read a sample, through its JSON.
					b, err := json.Marshal(r.Series)
					if err != nil {
						errs[i] = fmt.Errorf("run %s: series: %w", r.ID, err)
						continue
					}
					raw = b
				}
				if raw != nil {
					if err := json.Unmarshal(raw, &pr.samples); err != nil {
						errs[i] = fmt.Errorf("run %s: series: %w", r.ID, err)
						continue
					}
				}
				for k := range pr.samples {
					s := &pr.samples[k]
					s.NoStates = slices.Contains(s.Missing, "states")
					s.Missing = nil
				}
				out[j.vi][j.ri] = pr
			}
		}()
	}
	for i := range jobs {
		next <- i
	}
	close(next)
	wg.Wait()
	have := false
	for i, err := range errs {
		if err != nil {
			return nil, false, err
		}
		have = have || len(out[jobs[i].vi][jobs[i].ri].samples) > 0
	}
	c.plotCache, c.plotHave = out, have
	return out, have, nil
}
