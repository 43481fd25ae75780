package workload

// StopPhase is what a connection was waiting for when the run stopped
// before it ended: such a connection is neither completed nor an error, but
// unfinished, and every count of a run adds up only when it is counted as
// such (attempts = completed + errors + unfinished).
type StopPhase int

// The phases an unfinished connection can be in.
const (
	// StopConnect: socket, bind or connect() had not returned.
	StopConnect StopPhase = iota
	// StopFirstByte: connected, the request sent or being sent, no byte of
	// the peer's answer read yet.
	StopFirstByte
	// StopDrain: waiting for the peer's EOF, after the own FIN or after the
	// answer began to arrive.
	StopDrain
	// StopHeld: kept open on purpose (a hold scenario, a storm's hold), or
	// waiting for room to be kept.
	StopHeld
	NumStopPhases
)

// StopPhaseNames are the names the phases carry in records and summaries;
// the first three are the latency phases' names.
var StopPhaseNames = [NumStopPhases]string{"connect", "first_byte", "drain", "held"}

func (p StopPhase) String() string { return StopPhaseNames[p] }

// phaseIdle is a worker's published phase between connections; a phase p
// in progress is published as phaseOf(p), so that zero means idle.
const phaseIdle uint32 = 0

func phaseOf(p StopPhase) uint32 { return uint32(p) + 1 }

// UnfinishedMap turns counts by phase into the record's form (phase name
// to count), leaving out zeros; nil when nothing was unfinished, so that
// records without unfinished connections carry no field.
func UnfinishedMap(u [NumStopPhases]uint64) map[string]uint64 {
	var m map[string]uint64
	for p, n := range u {
		if n == 0 {
			continue
		}
		if m == nil {
			m = map[string]uint64{}
		}
		m[StopPhaseNames[p]] = n
	}
	return m
}
