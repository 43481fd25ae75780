package workload

import "fmt"

// ArrivalNames returns the spelling of every arrival process, as
// ParseArrival accepts it, in the order help lists them: shell completion
// and messages take the list from here.
func ArrivalNames() []string { return names(ArrivalConstant, ArrivalPoisson) }

// CloserNames returns the spelling of every storm closer, as ParseCloser
// accepts it, in the order help lists them.
func CloserNames() []string { return names(CloserClient, CloserServer, CloserBoth) }

// OnRefusedNames returns the spelling of every refusal policy.
func OnRefusedNames() []string { return names(RefusedStop, RefusedContinue) }

// names spells values the way their String method does.
func names[T fmt.Stringer](values ...T) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = v.String()
	}
	return out
}
