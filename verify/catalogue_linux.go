package verify

import (
	"fmt"
	"sort"
	"strings"
)

// Catalogue returns every claim in the order they are reported.
func Catalogue() []Claim {
	return []Claim{
		claimHalfCloseReceive,
		claimEOFAndWriteAfterCloseWrite,
		claimUnreadCloseRST,
		claimCloseWriteTwice,
		claimLinger0,
		claimFinTimeoutFinWait2,
		claimFinTimeoutTimeWait,
		claimTWReuse,
		claimTimeWaitCloser,
		claimCloseWaitLeak,
		claimMaxTWBuckets,
		claimBindNoPort,
		claimCloseAfterData,
		claimFourSegmentClose,
		claimLingerTimeout,
		claimTWReuseServer,
		claimFinTimeoutCloseWait,
		claimSomaxconnBacklog,
		claimDeadlineReset,
	}
}

// Names returns the claim names in catalogue order.
func Names() []string {
	cs := Catalogue()
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name
	}
	return out
}

// Lookup finds a claim by name; an unknown name's error lists the names.
func Lookup(name string) (Claim, error) {
	for _, c := range Catalogue() {
		if c.Name == name {
			return c, nil
		}
	}
	names := Names()
	sort.Strings(names)
	return Claim{}, fmt.Errorf("%w %q; accepted: %s", ErrUnknownClaim, name, strings.Join(names, ", "))
}
