package workload

import "fmt"

// Arrival is how an open loop spaces connections.
type Arrival int

// The arrival processes of the open loop.
const (
	ArrivalConstant Arrival = iota
	ArrivalPoisson
)

// ParseArrival parses --arrival.
func ParseArrival(s string) (Arrival, error) {
	switch s {
	case "constant", "":
		return ArrivalConstant, nil
	case "poisson":
		return ArrivalPoisson, nil
	}
	return 0, fmt.Errorf("unknown arrival %q: want constant or poisson", s)
}

func (a Arrival) String() string {
	if a == ArrivalPoisson {
		return "poisson"
	}
	return "constant"
}
