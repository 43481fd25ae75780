package metrics

import (
	"sync"

	"github.com/closeload/closeload/collector"
)

// Census counts socket states at scrape time for a provider. A
// collector.StateSource serves one caller at a time; Census serialises
// scrapes that arrive together.
type Census struct {
	mu     sync.Mutex
	src    *collector.StateSource
	counts collector.Counts
}

// OpenCensus opens the state source q describes.
func OpenCensus(q collector.StateQuery) (*Census, error) {
	src, err := collector.OpenStateSource(q)
	if err != nil {
		return nil, err
	}
	return &Census{src: src}, nil
}

// Fill counts the sockets once and puts them into l as side's states and
// orphans. A failed count leaves l without states: the scrape still serves
// everything else.
func (c *Census) Fill(l *Live, side string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts.Reset()
	if err := c.src.Count(&c.counts); err != nil {
		return err
	}
	states, orphans := StateMaps(&c.counts)
	if l.States == nil {
		l.States = map[string]map[string]uint64{}
	}
	if l.Orphans == nil {
		l.Orphans = map[string]map[string]uint64{}
	}
	l.States[side], l.Orphans[side] = states, orphans
	return nil
}

// Close releases the source.
func (c *Census) Close() error { return c.src.Close() }

// FromWatch turns a frame of closeload watch into live figures: one
// PortStates per watched port, and the frame's row of every counted socket
// as side SideAll.
func FromWatch(f collector.WatchFrame) Live {
	var l Live
	for _, r := range f.Rows {
		states, orphans := StateMaps(&r.Counts)
		if r.Port == 0 {
			l.States = map[string]map[string]uint64{SideAll: states}
			l.Orphans = map[string]map[string]uint64{SideAll: orphans}
			continue
		}
		l.Ports = append(l.Ports, PortStates{Port: r.Port, States: states})
	}
	return l
}
