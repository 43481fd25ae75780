package collector

import (
	"errors"
	"fmt"
	"sync"

	"github.com/closeload/closeload/results"
)

// Source names, as --collector-source accepts them and CollectorHealth
// records them.
const (
	SourceAuto    = "auto"    // netlink, falling back to proc when refused
	SourceNetlink = "netlink" // NETLINK_SOCK_DIAG only
	SourceProc    = "proc"    // /proc/net/tcp{,6} only
)

// SourceEBPF ("ebpf", the kernel-event tracer) is declared in tracer.go.

// Address families for StateQuery.Families (the values of AF_INET and
// AF_INET6 on Linux).
const (
	FamilyIPv4 = 2
	FamilyIPv6 = 10
)

// DefaultProcRoot is where procfs is mounted; tests and benchmarks inject
// another root, e.g. /proc/PID to read another process's network namespace.
const DefaultProcRoot = "/proc"

// ErrSource marks an unknown --collector-source value.
var ErrSource = errors.New("unknown collector source")

// ValidateSource checks a --collector-source value ("" means auto).
func ValidateSource(s string) error {
	switch s {
	case "", SourceAuto, SourceNetlink, SourceProc, SourceEBPF:
		return nil
	}
	return fmt.Errorf("collector source %q: %w (accepted: auto, ebpf, netlink, proc)", s, ErrSource)
}

// StateQuery says which sockets to count and how.
type StateQuery struct {
	// ProcRoot is the procfs root (default "/proc").
	ProcRoot string
	// Source is "auto" (default), "netlink" or "proc".
	Source string
	// Ports selects sockets whose local or remote port is one of them;
	// empty counts every TCP socket. Port 0 is an error.
	Ports []uint16
	// Families holds FamilyIPv4 and/or FamilyIPv6; empty means both.
	// IPv4 peers of dual-stack listeners are IPv6 sockets (::ffff:a.b.c.d).
	Families []int
	// NetnsPath, when set, counts in that network namespace (e.g.
	// /proc/PID/ns/net; needs CAP_SYS_ADMIN): the netlink socket is opened
	// there. Set ProcRoot to /proc/PID too, so the proc source and counters
	// see the same namespace.
	NetnsPath string
}

func (q StateQuery) normalize() (StateQuery, error) {
	if q.ProcRoot == "" {
		q.ProcRoot = DefaultProcRoot
	}
	if q.Source == "" {
		q.Source = SourceAuto
	}
	if err := ValidateSource(q.Source); err != nil {
		return q, err
	}
	if q.Source == SourceEBPF {
		// The tracer counts transitions, not sockets: a socket listing
		// under it is sock_diag's or /proc's.
		q.Source = SourceAuto
	}
	for _, p := range q.Ports {
		if p == 0 {
			return q, fmt.Errorf("port 0: %w", ErrBadPort)
		}
	}
	if len(q.Families) == 0 {
		q.Families = []int{FamilyIPv4, FamilyIPv6}
	}
	for _, f := range q.Families {
		if f != FamilyIPv4 && f != FamilyIPv6 {
			return q, fmt.Errorf("address family %d: want FamilyIPv4 (%d) or FamilyIPv6 (%d)", f, FamilyIPv4, FamilyIPv6)
		}
	}
	return q, nil
}

// resetSink is a sink that can start over, for a retried netlink dump.
type resetSink interface {
	sink
	reset()
}

func (c *Counts) reset() { *c = Counts{} }

// source is one way of listing sockets.
type source interface {
	name() string
	// count lists the matching sockets into s (which starts empty); errs
	// receives parse errors.
	count(s resetSink, errs *Counts) error
	close() error
}

// openNetlinkSource opens the sock_diag source; tests replace it to play a
// kernel that refuses netlink.
var openNetlinkSource = func(netnsPath string, families []int, ports *portSet) (source, error) {
	n, err := newNetlinkSource(netnsPath, families, ports)
	if err != nil {
		return nil, err
	}
	return n, nil
}

// StateSource is an open socket-state source, kept across samples so that a
// sample costs no socket or buffer allocation.
type StateSource struct {
	mu       sync.Mutex
	q        StateQuery
	ports    *portSet
	src      source
	fallback string
	notes    []string
}

// OpenStateSource validates q and opens its source. With Source "auto" a
// refused netlink socket falls back to /proc; FallbackReason says why.
func OpenStateSource(q StateQuery) (*StateSource, error) {
	q, err := q.normalize()
	if err != nil {
		return nil, err
	}
	s := &StateSource{q: q, ports: newPortSet(q.Ports)}
	if q.Source == SourceProc {
		s.src = newProcSource(q.ProcRoot, q.Families, s.ports)
		return s, nil
	}
	nl, err := openNetlinkSource(q.NetnsPath, q.Families, s.ports)
	if err != nil {
		if q.Source == SourceNetlink {
			return nil, err
		}
		s.fallBack(err)
		return s, nil
	}
	s.src = nl
	return s, nil
}

func (s *StateSource) fallBack(err error) {
	if s.src != nil {
		s.src.close()
	}
	s.fallback = fmt.Sprintf("netlink sock_diag unavailable (%v): counting from %s/net/tcp{,6}", err, s.q.ProcRoot)
	s.src = newProcSource(s.q.ProcRoot, s.q.Families, s.ports)
}

// Name is the source in use: "netlink" or "proc".
func (s *StateSource) Name() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.src.name()
}

// FallbackReason is why "auto" uses /proc, or "" when it does not.
func (s *StateSource) FallbackReason() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fallback
}

// TakeNotes returns, once each, remarks a source made about its input (a
// missing /proc/net/tcp6 when IPv6 is off).
func (s *StateSource) TakeNotes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.src.(*procSource); ok {
		s.notes = append(s.notes, p.takeNotes()...)
	}
	n := s.notes
	s.notes = nil
	return n
}

// Count zeroes c and counts the matching sockets into it.
func (s *StateSource) Count(c *Counts) error {
	c.reset()
	return s.countInto(c, c)
}

func (s *StateSource) countInto(sk resetSink, errs *Counts) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.src.count(sk, errs)
	if err != nil && s.q.Source == SourceAuto && s.src.name() == SourceNetlink && errors.Is(err, ErrNetlink) {
		// Refused at dump time: fall back once, and say so once.
		s.fallBack(err)
		sk.reset()
		*errs = Counts{}
		err = s.src.count(sk, errs)
	}
	return err
}

// Close releases the source's socket.
func (s *StateSource) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.src.close()
}

// CountStates counts the sockets q selects, by state, in one call: it opens
// a source, counts once and closes it. States without sockets are absent
// from the map. Callers that count repeatedly keep an OpenStateSource.
func CountStates(q StateQuery) (map[string]results.StateCount, error) {
	s, err := OpenStateSource(q)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var c Counts
	if err := s.Count(&c); err != nil {
		return nil, err
	}
	if c.ParseErrors > 0 && c.Sockets() == 0 {
		return nil, fmt.Errorf("%w: %d lines of %s/net/tcp{,6} unreadable", ErrParse, c.ParseErrors, s.q.ProcRoot)
	}
	return c.Map(), nil
}

// DumpRetries is how many sock_diag dumps were retried after the kernel
// marked them interrupted.
func (s *StateSource) DumpRetries() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.src.(*netlinkSource); ok {
		return n.retries
	}
	return 0
}
