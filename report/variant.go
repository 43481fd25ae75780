package report

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/closeload/closeload/results"
)

// VariantKey is the identity of a variant: the sysctls the run applied and
// every configuration field that changes what is measured (mix, shape,
// connections, rate, sizes, durations...). Records with equal keys are
// repeats of one variant. Fields that only say how or when a run was made
// (sampling interval, start time, processes, source addresses as listed)
// are left out, and so is the shard slice: a merged record holds the whole.
func VariantKey(r *results.Run) string {
	var b strings.Builder
	keys := make([]string, 0, len(r.Sysctls.Applied))
	for k := range r.Sysctls.Applied {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b.WriteString("sysctl")
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s", k, r.Sysctls.Applied[k])
	}
	for _, f := range variantFields(r) {
		fmt.Fprintf(&b, "|%s=%s", f.name, f.value)
	}
	return b.String()
}

type field struct{ name, value string }

// variantFields lists what defines a variant besides its sysctls: the kind
// of place the run happened in (an isolated network namespace or the host's:
// a host namespace carries what earlier runs left) and its configuration,
// as short name=value pairs, in a fixed order.
func variantFields(r *results.Run) []field {
	return append([]field{{"namespace", placeOf(r.Provenance.Namespace)}}, configFields(r.Config)...)
}

// placeOf is the kind of namespace a run happened in: a fresh namespace
// with or without a user namespace is the same clean slate.
func placeOf(ns string) string {
	if strings.HasPrefix(ns, "isolated") {
		return "isolated"
	}
	if ns == "" {
		return "unknown"
	}
	return ns
}

// configFields lists the configuration that defines a variant, as short
// name=value pairs, in a fixed order.
func configFields(c results.Config) []field {
	mix := make([]string, len(c.Mix))
	for i, m := range c.Mix {
		mix[i] = fmt.Sprintf("%s:%d", m.Scenario, m.Weight)
	}
	target := "builtin"
	if !c.BuiltinTarget {
		target = c.Target
	}
	fs := []field{
		{"mix", strings.Join(mix, ",")},
		{"shape", c.Shape},
		{"conns", strconv.Itoa(c.Conns)},
		{"rate", strconv.FormatFloat(c.Rate, 'g', -1, 64)},
		{"arrival", c.Arrival},
		{"duration", durString(c.Duration)},
		{"warmup", durString(c.Warmup)},
		{"cycles", strconv.FormatUint(c.Cycles, 10)},
		{"target", target},
		{"sources", strconv.Itoa(len(c.Sources))},
		{"request-size", strconv.Itoa(c.RequestSize)},
		{"response-size", strconv.Itoa(c.ResponseSize)},
		{"hold", durString(c.Hold)},
		{"timeout", durString(c.Timeout)},
		{"request", c.Request},
		{"storm", strconv.Itoa(c.Storm)},
		{"storm-window", durString(c.StormWindow)},
		{"closer", c.Closer},
	}
	return fs
}

func durString(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	return d.String()
}

// shortSysctl drops the common prefixes of TCP sysctl names so variant names
// stay readable: net.ipv4.tcp_tw_reuse → tcp_tw_reuse.
func shortSysctl(k string) string {
	for _, p := range []string{"net.ipv4.", "net.core.", "net.ipv6.", "net."} {
		if strings.HasPrefix(k, p) {
			return k[len(p):]
		}
	}
	return k
}

// nameVariants gives each variant a short, distinct name: the user's label,
// else the matrix's names for the variants, else what differs between the
// variants (sysctls first, then configuration).
func nameVariants(vs []*variantGroup) {
	// What differs across variants.
	sysKeys := map[string]bool{}
	for _, v := range vs {
		for k := range v.runs[0].Sysctls.Applied {
			sysKeys[k] = true
		}
	}
	var diffSys []string
	for k := range sysKeys {
		first := ""
		differs := false
		for i, v := range vs {
			val, ok := v.runs[0].Sysctls.Applied[k]
			if !ok {
				val = "(unset)"
			}
			if i == 0 {
				first = val
			} else if val != first {
				differs = true
			}
		}
		if differs {
			diffSys = append(diffSys, k)
		}
	}
	sort.Strings(diffSys)
	var diffCfg []int
	ref := variantFields(vs[0].runs[0])
	for i := range ref {
		for _, v := range vs[1:] {
			if variantFields(v.runs[0])[i].value != ref[i].value {
				diffCfg = append(diffCfg, i)
				break
			}
		}
	}

	// auto names a variant by what differs from the others; with nothing
	// differing (one variant), by the matrix's name for it or what it set.
	auto := func(v *variantGroup) string {
		var parts []string
		for _, k := range diffSys {
			val, ok := v.runs[0].Sysctls.Applied[k]
			if !ok {
				// Not set by the variant: the value in effect, as found.
				val, ok = v.runs[0].Sysctls.Before[k]
			}
			if !ok {
				val = "unset"
			}
			parts = append(parts, shortSysctl(k)+"="+val)
		}
		fs := variantFields(v.runs[0])
		for _, i := range diffCfg {
			parts = append(parts, fs[i].name+"="+fs[i].value)
		}
		if len(parts) > 0 {
			return strings.Join(parts, ",")
		}
		if n := consistentVariantName(v.runs); n != "" {
			return n
		}
		keys := make([]string, 0, len(v.runs[0].Sysctls.Applied))
		for k := range v.runs[0].Sysctls.Applied {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			parts = append(parts, shortSysctl(k)+"="+v.runs[0].Sysctls.Applied[k])
		}
		if len(parts) == 0 {
			return "default"
		}
		return strings.Join(parts, ",")
	}

	labelCount := map[string]int{}
	for _, v := range vs {
		if v.label != "" {
			labelCount[v.label]++
		}
	}
	// A matrix names its variants (the user's NAME, or the assignments as
	// typed); use those names when every variant has one, consistent over
	// its repeats, and no two variants share it.
	matrixNames := true
	seenNames := map[string]bool{}
	for _, v := range vs {
		n := consistentVariantName(v.runs)
		if n == "" || seenNames[n] {
			matrixNames = false
			break
		}
		seenNames[n] = true
	}
	used := map[string]int{}
	for _, v := range vs {
		var name string
		switch {
		case v.label != "" && labelCount[v.label] == 1:
			name = v.label
		case v.label != "":
			name = v.label + "/" + auto(v)
		case matrixNames:
			name = sysctlPrefixes.Replace(consistentVariantName(v.runs))
		default:
			name = auto(v)
		}
		used[name]++
		if used[name] > 1 {
			name = fmt.Sprintf("%s#%d", name, used[name])
		}
		v.name = name
	}
}

// sysctlPrefixes shortens sysctl names inside a variant name, as the
// matrix's own table does.
var sysctlPrefixes = strings.NewReplacer("net.ipv4.", "", "net.core.", "", "net.ipv6.", "")

func consistentVariantName(runs []*results.Run) string {
	n := runs[0].Variant
	for _, r := range runs[1:] {
		if r.Variant != n {
			return ""
		}
	}
	return n
}

// describeConfig is the one-line configuration shown under a table: what
// the variants share.
func describeConfig(c results.Config) string {
	mix := make([]string, len(c.Mix))
	for i, m := range c.Mix {
		mix[i] = fmt.Sprintf("%s:%d", m.Scenario, m.Weight)
	}
	parts := []string{"mix " + strings.Join(mix, ",")}
	switch c.Shape {
	case "open":
		arr := c.Arrival
		if arr == "" {
			arr = "constant"
		}
		parts = append(parts, fmt.Sprintf("open loop %g/s %s", c.Rate, arr))
	case "storm":
		parts = append(parts, fmt.Sprintf("storm of %d in %s", c.Storm, c.StormWindow))
	default:
		parts = append(parts, fmt.Sprintf("closed loop %d conns", c.Conns))
	}
	if c.Duration > 0 {
		parts = append(parts, c.Duration.String())
	}
	if c.BuiltinTarget {
		parts = append(parts, "built-in target")
	} else if c.Target != "" {
		parts = append(parts, "target "+c.Target)
	}
	return strings.Join(parts, ", ")
}
