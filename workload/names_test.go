package workload

import (
	"slices"
	"testing"
)

// TestNamesParse checks that every listed name parses back to a value that
// spells it, and that the lists hold no name twice: a list completion
// offers must be a list the parser takes.
func TestNamesParse(t *testing.T) {
	tests := []struct {
		name  string
		names []string
		parse func(string) (string, error)
		want  int
	}{
		{"arrival", ArrivalNames(), func(s string) (string, error) { a, err := ParseArrival(s); return a.String(), err }, 2},
		{"closer", CloserNames(), func(s string) (string, error) { c, err := ParseCloser(s); return c.String(), err }, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.names) != tc.want {
				t.Fatalf("%d names %q, want %d", len(tc.names), tc.names, tc.want)
			}
			for i, n := range tc.names {
				got, err := tc.parse(n)
				if err != nil || got != n {
					t.Errorf("%q parses to %q, %v", n, got, err)
				}
				if slices.Contains(tc.names[:i], n) {
					t.Errorf("%q listed twice", n)
				}
			}
		})
	}
}
