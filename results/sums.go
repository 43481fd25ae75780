package results

// ErrorTotal sums error counts over their classes.
func ErrorTotal(m map[string]ErrorCount) uint64 {
	var n uint64
	for _, e := range m {
		n += e.Count
	}
	return n
}

// CountTotal sums counts kept by name (unfinished connections by phase,
// resets by state).
func CountTotal(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}
