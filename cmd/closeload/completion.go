package main

import (
	"strings"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/sysctl"
	"github.com/closeload/closeload/verify"
	"github.com/closeload/closeload/workload"
	"github.com/spf13/cobra"
)

// candidate is one value completion offers, with the line a shell that
// shows descriptions (zsh, fish) prints beside it.
type candidate struct{ value, about string }

// valueLists are the flags whose values form a closed set, each with where
// its values come from. A command that has the flag completes it; --format
// lists differ by command and are in formatLists.
var valueLists = []struct {
	flag     string
	complete cobra.CompletionFunc
}{
	{"scenario", completeList(scenarioCandidates, true)},
	{"claim", completeList(claimCandidates, false)},
	{"sysctl", completeSysctlKey},
	{"arrival", completeFixed(workload.ArrivalNames)},
	{"closer", completeFixed(workload.CloserNames)},
	{"collector-source", completeFixed(collector.SourceNames)},
	{"procs", completeFixed(func() []string { return []string{"auto"} })},
	{"on-refused", completeFixed(workload.OnRefusedNames)},
}

// formatLists are the --format values of each command that has the flag,
// by command path.
var formatLists = map[string]func() []string{
	"closeload report": func() []string { return reportFormats },
	"closeload run":    func() []string { return summaryFormats },
	"closeload watch":  func() []string { return summaryFormats },
	"closeload serve":  func() []string { return summaryFormats },
	"closeload matrix": func() []string { return summaryFormats },
	"closeload verify": func() []string { return verify.Formats },
}

// registerCompletions gives every flag with a closed set of values its
// completion, on every command of the tree that has the flag, so that
// `closeload completion SHELL` scripts complete values, not only names.
func registerCompletions(root *cobra.Command) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, l := range valueLists {
			if c.Flags().Lookup(l.flag) != nil {
				_ = c.RegisterFlagCompletionFunc(l.flag, l.complete)
			}
		}
		if list, ok := formatLists[c.CommandPath()]; ok && c.Flags().Lookup("format") != nil {
			_ = c.RegisterFlagCompletionFunc("format", completeFixed(list))
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// completeFixed completes one value of a fixed list.
func completeFixed(values func() []string) cobra.CompletionFunc {
	return func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		var out []cobra.Completion
		for _, v := range values() {
			if strings.HasPrefix(v, toComplete) {
				out = append(out, v)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeList completes the last item of a comma-separated list, keeping
// the items before it and leaving out names already given. With weights an
// item may be NAME:WEIGHT; once the colon is typed there is nothing to
// offer.
func completeList(candidates func() []candidate, weights bool) cobra.CompletionFunc {
	return func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		const directive = cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
		cut := strings.LastIndexByte(toComplete, ',') + 1
		done, last := toComplete[:cut], toComplete[cut:]
		if weights && strings.Contains(last, ":") {
			return nil, directive
		}
		given := map[string]bool{}
		for _, item := range strings.Split(done, ",") {
			name, _, _ := strings.Cut(item, ":")
			given[strings.TrimSpace(name)] = true
		}
		var out []cobra.Completion
		for _, c := range candidates() {
			if given[c.value] || !strings.HasPrefix(c.value, last) {
				continue
			}
			if done == "" {
				out = append(out, cobra.CompletionWithDesc(c.value, c.about))
			} else {
				// Without descriptions: bash's script matches described
				// values after quoting them, and quoting escapes the comma.
				out = append(out, done+c.value)
			}
		}
		return out, directive
	}
}

// completeSysctlKey completes the KEY of KEY=VALUE from the registry; the
// value is the user's.
func completeSysctlKey(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	const directive = cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
	if strings.Contains(toComplete, "=") {
		return nil, directive
	}
	var out []cobra.Completion
	for _, k := range sysctl.Keys() {
		if strings.HasPrefix(k.Name, toComplete) {
			out = append(out, cobra.CompletionWithDesc(k.Name+"=", k.Meaning))
		}
	}
	return out, directive
}

func scenarioCandidates() []candidate {
	var out []candidate
	for _, s := range workload.Catalogue() {
		out = append(out, candidate{s.Name, s.Shows})
	}
	return out
}
