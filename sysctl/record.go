package sysctl

import "github.com/closeload/closeload/results"

// Modes of results.Sysctls.Mode.
const (
	ModeIsolated = "isolated"
	ModeHost     = "host"
	ModeNone     = "none"
)

// Record fills a record's sysctl section: what the variant set, and every
// registry key before it was set and after the run, as seen in the run's
// own namespace.
func Record(mode string, as []Assignment, before, after map[string]string) results.Sysctls {
	s := results.Sysctls{Mode: mode, Before: before, After: after}
	if len(as) > 0 {
		s.Applied = make(map[string]string, len(as))
		for _, a := range as {
			s.Applied[a.Key] = a.Value
		}
	}
	return s
}
