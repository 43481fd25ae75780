//go:build !linux

package runner

import "io"

// IsTerminal reports whether w is a terminal; live views redraw in place
// only there. Elsewhere than Linux closeload does not tell, and prints
// lines.
func IsTerminal(w io.Writer) bool { return false }
