package workload

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrMix is returned for a --scenario value that does not parse.
var ErrMix = errors.New("bad scenario mix")

// MixEntry is one scenario of a mix with its weight.
type MixEntry struct {
	Scenario Scenario
	Weight   int
}

// Mix is a weighted set of scenarios. Workers pick from it by walking a
// precomputed schedule instead of drawing random numbers, so the proportions
// are exact over every whole schedule and picking costs an index increment.
type Mix struct {
	Entries []MixEntry
	// schedule lists mix indexes, each appearing weight/g times (g the gcd of
	// the weights), interleaved by smooth weighted round robin.
	schedule []uint8
}

// ParseMix parses "client-halfclose:70,linger0:20,unread-close:10"; a weight
// may be left out (1). Each scenario may appear once.
func ParseMix(spec string) (Mix, error) {
	var m Mix
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return m, fmt.Errorf("%w: empty; give NAME[:WEIGHT],... e.g. client-halfclose:70,linger0:30", ErrMix)
	}
	seen := map[Scenario]bool{}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		name, w, hasW := strings.Cut(part, ":")
		s, err := ParseScenario(strings.TrimSpace(name))
		if err != nil {
			return Mix{}, err
		}
		weight := 1
		if hasW {
			weight, err = strconv.Atoi(strings.TrimSpace(w))
			if err != nil || weight < 1 || weight > 1000 {
				return Mix{}, fmt.Errorf("%w: weight %q of %s: want a whole number from 1 to 1000", ErrMix, w, name)
			}
		}
		if seen[s] {
			return Mix{}, fmt.Errorf("%w: %s appears twice", ErrMix, s)
		}
		seen[s] = true
		m.Entries = append(m.Entries, MixEntry{s, weight})
	}
	m.build()
	return m, nil
}

// NewMix returns a mix of the given scenarios with equal weights.
func NewMix(ss ...Scenario) Mix {
	m := Mix{}
	for _, s := range ss {
		m.Entries = append(m.Entries, MixEntry{s, 1})
	}
	m.build()
	return m
}

func (m *Mix) build() {
	g := 0
	for _, e := range m.Entries {
		g = gcd(g, e.Weight)
	}
	total := 0
	for _, e := range m.Entries {
		total += e.Weight / g
	}
	m.schedule = make([]uint8, 0, total)
	cur := make([]int, len(m.Entries))
	for range total {
		best := 0
		for i, e := range m.Entries {
			cur[i] += e.Weight / g
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		m.schedule = append(m.schedule, uint8(best))
	}
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// At returns the mix index to use for a worker's n-th connection.
func (m *Mix) At(n uint64) int { return int(m.schedule[n%uint64(len(m.schedule))]) }

// String formats the mix as ParseMix accepts it.
func (m Mix) String() string {
	parts := make([]string, len(m.Entries))
	for i, e := range m.Entries {
		parts[i] = fmt.Sprintf("%s:%d", e.Scenario, e.Weight)
	}
	return strings.Join(parts, ",")
}

// Has reports whether the mix contains s.
func (m Mix) Has(s Scenario) bool {
	for _, e := range m.Entries {
		if e.Scenario == s {
			return true
		}
	}
	return false
}
