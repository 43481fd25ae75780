package collector

import "sort"

// portSet is the run's ports as a 65536-bit set: a socket matches when its
// local or remote port is in it. An empty set matches everything.
type portSet struct {
	bits  [1024]uint64
	ports []uint16 // sorted, deduplicated
}

// newPortSet returns nil (match all) for no ports.
func newPortSet(ports []uint16) *portSet {
	if len(ports) == 0 {
		return nil
	}
	s := &portSet{}
	for _, p := range ports {
		if !s.has(p) {
			s.bits[p>>6] |= 1 << (p & 63)
			s.ports = append(s.ports, p)
		}
	}
	sort.Slice(s.ports, func(i, j int) bool { return s.ports[i] < s.ports[j] })
	return s
}

func (s *portSet) has(p uint16) bool { return s.bits[p>>6]&(1<<(p&63)) != 0 }

// match reports whether a socket with these ports is one of the run's.
func (s *portSet) match(lport, rport uint16) bool {
	return s == nil || s.has(lport) || s.has(rport)
}
