package sysctl

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/closeload/closeload/internal/suggest"
)

// Sentinel errors of parsing and validation; messages wrap them with the key,
// the value and what would be accepted.
var (
	ErrMalformed  = errors.New("malformed sysctl assignment")
	ErrUnknownKey = errors.New("unknown sysctl")
	ErrBadValue   = errors.New("invalid sysctl value")
	ErrDuplicate  = errors.New("sysctl set twice")
	ErrGlobalKey  = errors.New("global sysctl cannot be set in an isolated variant")
)

// Assignment is one key set to one value. Key is dotted
// (net.ipv4.tcp_tw_reuse); Value is normalised (fields separated by one
// space) so that it compares equal to what Snapshot reads back.
type Assignment struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// String renders the assignment as key=value, the form users type.
func (a Assignment) String() string { return a.Key + "=" + a.Value }

// wellFormed is what --allow-unknown-sysctl accepts: a net.* name made of
// plain segments, so that no name can leave /proc/sys/net ("..", "/").
var wellFormed = regexp.MustCompile(`^net(\.[A-Za-z0-9_][A-Za-z0-9_-]*)+$`)

// ParseAssignments parses "key=value" specs, checks every key against the
// registry (or, with allowUnknown, that it is a well-formed net.* name) and
// every value against the key's shape and range. Nothing is returned unless
// every spec is valid, so a caller never acts on half of a list.
func ParseAssignments(specs []string, allowUnknown bool) ([]Assignment, error) {
	out := make([]Assignment, 0, len(specs))
	seen := make(map[string]bool, len(specs))
	for _, spec := range specs {
		a, err := ParseAssignment(spec, allowUnknown)
		if err != nil {
			return nil, err
		}
		if seen[a.Key] {
			return nil, fmt.Errorf("%w: %s (give each key once per variant)", ErrDuplicate, a.Key)
		}
		seen[a.Key] = true
		out = append(out, a)
	}
	return out, nil
}

// ParseAssignment parses and validates one "key=value".
func ParseAssignment(spec string, allowUnknown bool) (Assignment, error) {
	k, v, ok := strings.Cut(spec, "=")
	k = strings.TrimSpace(k)
	if !ok || k == "" {
		return Assignment{}, fmt.Errorf("%w: %q: want key=value, e.g. net.ipv4.tcp_tw_reuse=1", ErrMalformed, spec)
	}
	if err := CheckName(k, allowUnknown); err != nil {
		return Assignment{}, err
	}
	nv, err := NormalizeValue(k, v)
	if err != nil {
		return Assignment{}, err
	}
	return Assignment{Key: k, Value: nv}, nil
}

// CheckName accepts a registry key, or with allowUnknown any well-formed
// net.* name; an unknown name's error names the nearest known key.
func CheckName(name string, allowUnknown bool) error {
	if _, ok := byName[name]; ok {
		return nil
	}
	if allowUnknown && wellFormed.MatchString(name) {
		return nil
	}
	if allowUnknown {
		return fmt.Errorf("%w: %q is not a well-formed net.* name (dotted segments of letters, digits, _ and -)", ErrUnknownKey, name)
	}
	hint := ""
	if near := Nearest(name); near != "" {
		hint = "; did you mean " + near + "?"
	}
	return fmt.Errorf("%w %q%s (see 'closeload sysctl list'; --allow-unknown-sysctl accepts other net.* keys)", ErrUnknownKey, name, hint)
}

// NormalizeValue checks v against the key's shape and range (for a registry
// key) and returns it with fields separated by single spaces. Values of keys
// outside the registry are only checked for being one printable line.
func NormalizeValue(name, v string) (string, error) {
	fields := strings.Fields(v)
	k, known := byName[name]
	if !known {
		if len(fields) == 0 || len(v) > 256 || strings.ContainsAny(v, "\n\x00") {
			return "", fmt.Errorf("%w: %s=%q: want one non-empty line of at most 256 bytes", ErrBadValue, name, v)
		}
		return strings.Join(fields, " "), nil
	}
	want := "an integer"
	if k.Fields > 1 {
		want = fmt.Sprintf("%d integers separated by spaces", k.Fields)
	}
	rng := fmt.Sprintf("%d..%d", k.Min, k.Max)
	if len(fields) != k.Fields {
		return "", fmt.Errorf("%w: %s=%q: want %s in %s%s", ErrBadValue, name, v, want, rng, unitSuffix(k))
	}
	nums := make([]int64, len(fields))
	for i, f := range fields {
		if !isDecimal(f) {
			return "", fmt.Errorf("%w: %s=%q: %q is not a decimal integer; want %s in %s%s", ErrBadValue, name, v, f, want, rng, unitSuffix(k))
		}
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil || n < k.Min || n > k.Max {
			return "", fmt.Errorf("%w: %s=%q: out of range; want %s in %s%s", ErrBadValue, name, v, want, rng, unitSuffix(k))
		}
		nums[i] = n
		fields[i] = strconv.FormatInt(n, 10) // drops leading zeros
	}
	if k.Ascending {
		for i := 1; i < len(nums); i++ {
			if nums[i] < nums[i-1] {
				return "", fmt.Errorf("%w: %s=%q: fields must not decrease (low <= high)", ErrBadValue, name, v)
			}
		}
	}
	return strings.Join(fields, " "), nil
}

func isDecimal(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func unitSuffix(k Key) string {
	if k.Unit == "" {
		return ""
	}
	return " (" + k.Unit + ")"
}

// CheckIsolatable refuses global keys: in a fresh network namespace the
// kernel does not offer them, and setting them anywhere would change the
// whole host for every process, which an isolated variant promises not to
// do. Keys outside the registry pass; the kernel decides inside the child.
func CheckIsolatable(as []Assignment) error {
	for _, a := range as {
		if k, ok := byName[a.Key]; ok && k.Scope == ScopeGlobal {
			return fmt.Errorf("%w: %s is global (one value for the whole host, not per network namespace), so a variant in its own namespace cannot set it without changing the host; use --host-sysctl (root, with an external target) to change it on the host with a restore journal", ErrGlobalKey, a.Key)
		}
	}
	return nil
}

// Nearest returns the registry key closest to name: an exact match of the
// last segment first (tcp_tw_reuse → net.ipv4.tcp_tw_reuse), else the
// smallest edit distance, if it is small enough to be a plausible typo.
func Nearest(name string) string {
	last := name
	if i := strings.LastIndexAny(name, "./"); i >= 0 {
		last = name[i+1:]
	}
	for _, k := range registry {
		if k.Name[strings.LastIndex(k.Name, ".")+1:] == last {
			return k.Name
		}
	}
	best, bestD := "", -1
	for _, k := range registry {
		d := suggest.Distance(name, k.Name)
		if ld := suggest.Distance(last, k.Name[strings.LastIndex(k.Name, ".")+1:]); ld < d {
			d = ld
		}
		if bestD < 0 || d < bestD {
			best, bestD = k.Name, d
		}
	}
	if bestD > len(last)/2+2 {
		return ""
	}
	return best
}
