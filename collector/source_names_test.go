package collector

import (
	"errors"
	"testing"
)

// TestSourceNamesValidate checks that every listed source is accepted and
// that a name off the list is refused, so the list and the check agree.
func TestSourceNamesValidate(t *testing.T) {
	for _, s := range SourceNames() {
		t.Run(s, func(t *testing.T) {
			if err := ValidateSource(s); err != nil {
				t.Errorf("listed source %q refused: %v", s, err)
			}
		})
	}
	if err := ValidateSource("sockstat"); !errors.Is(err, ErrSource) {
		t.Errorf("unlisted source accepted: %v", err)
	}
}
