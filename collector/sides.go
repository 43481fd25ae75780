package collector

import "github.com/closeload/closeload/results"

// sideSplit counts sockets in total and split by side: a socket whose local
// port is a target port is the target's, one whose remote port is, the
// client's. Sockets matching neither count in the total only.
type sideSplit struct {
	all     Counts
	side    [tracerSides]Counts // 0 client, 1 target
	targets *portSet
}

func (s *sideSplit) add(state uint8, owned bool, lport, rport uint16) {
	s.all.add(state, owned, lport, rport)
	if s.targets == nil {
		return
	}
	if s.targets.has(lport) {
		s.side[1].add(state, owned, lport, rport)
	} else if s.targets.has(rport) {
		s.side[0].add(state, owned, lport, rport)
	}
}

func (s *sideSplit) reset() {
	s.all.reset()
	s.side = [tracerSides]Counts{}
}

// sidesMap is the record's form of the split: side name -> state -> count.
func (s *sideSplit) sidesMap() map[string]map[string]results.StateCount {
	return map[string]map[string]results.StateCount{
		results.SideClient: s.side[0].Map(),
		results.SideTarget: s.side[1].Map(),
	}
}
