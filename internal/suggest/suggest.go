// Package suggest finds the "did you mean" for a mistyped name: a scenario,
// a sysctl key. Every command that refuses a name offers the nearest known
// one, so the suggestion must be computed the same way everywhere.
package suggest

import "sort"

// Distance is the Levenshtein edit distance between a and b.
func Distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Plausible reports whether a distance d from a name of length n is small
// enough to be a typo rather than another word.
func Plausible(d, n int) bool { return d <= n/2+1 }

// Nearest returns the candidate closest to s, or "" when none is a
// plausible typo. Ties go to the alphabetically first candidate.
func Nearest(s string, candidates []string) string {
	sorted := append([]string(nil), candidates...)
	sort.Strings(sorted)
	best, bestD := "", -1
	for _, c := range sorted {
		if d := Distance(s, c); bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	if bestD < 0 || !Plausible(bestD, len(s)) {
		return ""
	}
	return best
}
