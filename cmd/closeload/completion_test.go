package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/sysctl"
	"github.com/closeload/closeload/verify"
	"github.com/closeload/closeload/workload"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// complete runs cobra's hidden __complete command as a shell script does,
// returning the values offered (descriptions cut off) and the directive.
func complete(t *testing.T, args ...string) ([]string, cobra.ShellCompDirective) {
	t.Helper()
	code, stdout, stderr := run(t, append([]string{cobra.ShellCompRequestCmd}, args...)...)
	if code != 0 {
		t.Fatalf("__complete %q: exit %d\n%s", args, code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	last := lines[len(lines)-1]
	d, err := strconv.Atoi(strings.TrimPrefix(last, ":"))
	if !strings.HasPrefix(last, ":") || err != nil {
		t.Fatalf("__complete %q: no directive line in\n%s", args, stdout)
	}
	var values []string
	for _, l := range lines[:len(lines)-1] {
		v, _, _ := strings.Cut(l, "\t")
		values = append(values, v)
	}
	return values, cobra.ShellCompDirective(d)
}

func scenarioNames() []string {
	var out []string
	for _, s := range workload.Catalogue() {
		out = append(out, s.Name)
	}
	return out
}

// prefixed returns p+v for every v of values that is not in except.
func prefixed(p string, values []string, except ...string) []string {
	var out []string
	for _, v := range values {
		if !slices.Contains(except, v) {
			out = append(out, p+v)
		}
	}
	return out
}

// withPrefix returns the values that start with p.
func withPrefix(values []string, p string) []string {
	var out []string
	for _, v := range values {
		if strings.HasPrefix(v, p) {
			out = append(out, v)
		}
	}
	return out
}

func sysctlKeys(prefix string) []string {
	var out []string
	for _, k := range sysctl.Keys() {
		if strings.HasPrefix(k.Name, prefix) {
			out = append(out, k.Name+"=")
		}
	}
	return out
}

// TestFlagValueCompletion checks every value list completion offers, on
// every command that has the flag, as the shell asks for it.
func TestFlagValueCompletion(t *testing.T) {
	const (
		list  = cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
		fixed = cobra.ShellCompDirectiveNoFileComp
	)
	scenarios := scenarioNames()
	tests := []struct {
		name      string
		args      []string
		want      []string
		directive cobra.ShellCompDirective
	}{
		{"run scenario", []string{"run", "--scenario", ""}, scenarios, list},
		{"run -s", []string{"run", "-s", "linger"}, []string{"linger0"}, list},
		{"mix after a weight", []string{"run", "-s", "client-halfclose:70,li"}, []string{"client-halfclose:70,linger0"}, list},
		{"mix leaves out given names", []string{"run", "-s", "client-halfclose:70,linger0:20,"}, prefixed("client-halfclose:70,linger0:20,", scenarios, "client-halfclose", "linger0"), list},
		{"mix weight being typed", []string{"run", "-s", "linger0:2"}, nil, list},
		{"mix unknown prefix", []string{"run", "-s", "nope"}, nil, list},
		{"matrix scenario", []string{"matrix", "--scenario", "s"}, withPrefix(scenarios, "s"), list},
		{"serve scenario list", []string{"serve", "--scenario", "full-close,"}, prefixed("full-close,", scenarios, "full-close"), list},
		{"run sysctl", []string{"run", "--sysctl", ""}, sysctlKeys(""), list},
		{"run sysctl prefix", []string{"run", "--sysctl", "net.ipv4.tcp_fin"}, []string{"net.ipv4.tcp_fin_timeout="}, list},
		{"sysctl value being typed", []string{"run", "--sysctl", "net.ipv4.tcp_fin_timeout="}, nil, list},
		{"matrix sysctl", []string{"matrix", "--sysctl", "net.ipv4.tcp_tw"}, sysctlKeys("net.ipv4.tcp_tw"), list},
		{"report format", []string{"report", "--format", ""}, reportFormats, fixed},
		{"report -f", []string{"report", "-f", "c"}, []string{"csv"}, fixed},
		{"verify format", []string{"verify", "--format", ""}, verify.Formats, fixed},
		{"verify claim", []string{"verify", "--claim", ""}, verify.Names(), list},
		{"verify claim list", []string{"verify", "--claim", "tw-reuse,fin-timeout-"}, prefixed("tw-reuse,", withPrefix(verify.Names(), "fin-timeout-")), list},
		{"run arrival", []string{"run", "--arrival", ""}, []string{"constant", "poisson"}, fixed},
		{"matrix arrival", []string{"matrix", "--arrival", "p"}, []string{"poisson"}, fixed},
		{"run closer", []string{"run", "--closer", ""}, []string{"client", "server", "both"}, fixed},
		{"matrix closer", []string{"matrix", "--closer", "b"}, []string{"both"}, fixed},
		{"run collector source", []string{"run", "--collector-source", ""}, collector.SourceNames(), fixed},
		{"matrix collector source", []string{"matrix", "--collector-source", ""}, collector.SourceNames(), fixed},
		{"watch collector source", []string{"watch", "--collector-source", "n"}, []string{"netlink"}, fixed},
		{"run procs", []string{"run", "--procs", ""}, []string{"auto"}, fixed},
		{"matrix procs", []string{"matrix", "--procs", "a"}, []string{"auto"}, fixed},
		{"flag=value form", []string{"run", "--arrival=c"}, []string{"constant"}, fixed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, d := complete(t, tc.args...)
			if !slices.Equal(got, tc.want) {
				t.Errorf("completing %q: got %q, want %q", tc.args, got, tc.want)
			}
			if d != tc.directive {
				t.Errorf("completing %q: directive %d, want %d", tc.args, d, tc.directive)
			}
		})
	}
}

// closedSetFlags are the flags whose values form a closed set: each must
// complete its values on every command that has it.
var closedSetFlags = []string{"scenario", "sysctl", "format", "claim", "arrival", "closer", "collector-source", "procs", "on-refused"}

// TestEveryClosedFlagCompletes walks the whole command tree, so a command
// or closed-set flag added later without a completion fails here.
func TestEveryClosedFlagCompletes(t *testing.T) {
	var walk func(c *cobra.Command)
	seen := 0
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if !slices.Contains(closedSetFlags, f.Name) {
				return
			}
			seen++
			if _, ok := c.GetFlagCompletionFunc(f.Name); !ok {
				t.Errorf("%s --%s completes no values", c.CommandPath(), f.Name)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd())
	// run and matrix six each, serve, report and watch one, verify two.
	if seen < 17 {
		t.Errorf("only %d closed-set flags found in the command tree", seen)
	}
	t.Logf("%d closed-set flags complete their values", seen)
}

// TestCompletionScripts checks that the completion command writes a script
// for every shell the README names, one that calls back __complete.
func TestCompletionScripts(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		t.Run(shell, func(t *testing.T) {
			code, stdout, stderr := run(t, "completion", shell)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if !strings.Contains(stdout, cobra.ShellCompRequestCmd) {
				t.Errorf("the %s script does not call %s", shell, cobra.ShellCompRequestCmd)
			}
		})
	}
}

// shellCase is a command line typed up to a TAB, and what each shell's
// completion script, driven by the real closeload binary, offers there.
type shellCase struct {
	name string
	// words are the words typed; the last is the one being completed.
	words []string
	// bashWords are the same words as bash splits them (at : and =, its
	// COMP_WORDBREAKS); nil means words.
	bashWords []string
	// bash, zsh and fish are the values offered, as each shell's script
	// hands them over (bash: quoted and trimmed to the last word; zsh:
	// colons escaped; fish: as they are).
	bash, zsh, fish []string
}

var shellCases = []shellCase{
	{name: "arrival", words: []string{"run", "--arrival", ""},
		bash: []string{"constant", "poisson"}, zsh: []string{"constant", "poisson"}, fish: []string{"constant", "poisson"}},
	{name: "mix after a weight", words: []string{"run", "-s", "client-halfclose:70,li"},
		bashWords: []string{"run", "-s", "client-halfclose", ":", "70,li"},
		bash:      []string{`70\,linger0`}, zsh: []string{`client-halfclose\:70,linger0`},
		// cobra's fish script offers a second value, ending in a dot, to
		// keep fish from adding a space after the only one.
		fish: []string{"client-halfclose:70,linger0", "client-halfclose:70,linger0."}},
	{name: "sysctl key", words: []string{"matrix", "--sysctl", "net.ipv4.tcp_fin"},
		bash: []string{"net.ipv4.tcp_fin_timeout="}, zsh: []string{"net.ipv4.tcp_fin_timeout="}, fish: []string{"net.ipv4.tcp_fin_timeout="}},
	{name: "claim list", words: []string{"verify", "--claim", "tw-reuse,fin"},
		bash: []string{"tw-reuse,fin-timeout-finwait2", "tw-reuse,fin-timeout-timewait", "tw-reuse,fin-timeout-closewait"},
		zsh:  []string{"tw-reuse,fin-timeout-finwait2", "tw-reuse,fin-timeout-timewait", "tw-reuse,fin-timeout-closewait"},
		fish: []string{"tw-reuse,fin-timeout-closewait", "tw-reuse,fin-timeout-finwait2", "tw-reuse,fin-timeout-timewait"}},
}

// shellQuote quotes s for a POSIX shell (bash, zsh) or fish alike.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// shellDrivers run one case in one shell with the script installed as the
// README says, and print one offered value a line.
var shellDrivers = map[string]func(script string, c shellCase) string{
	// bash calls the completion function with COMP_* set, as it does on
	// TAB (COMP_TYPE 9); bash-completion provides the helpers it uses.
	"bash": func(script string, c shellCase) string {
		w := c.bashWords
		if w == nil {
			w = c.words
		}
		words := append([]string{"closeload"}, w...)
		var q []string
		for _, x := range words {
			q = append(q, shellQuote(x))
		}
		line := "closeload " + strings.Join(c.words, " ")
		return fmt.Sprintf(`source /usr/share/bash-completion/bash_completion
source %s
COMP_TYPE=9 COMP_LINE=%s COMP_POINT=%d COMP_WORDS=(%s) COMP_CWORD=%d
__start_closeload closeload %s %s 2>/dev/null
printf '%%s\n' "${COMPREPLY[@]}"
`, shellQuote(script), shellQuote(line), len(line), strings.Join(q, " "), len(words)-1,
			shellQuote(words[len(words)-1]), shellQuote(words[len(words)-2]))
	},
	// zsh runs the script's _closeload as compinit would, with words and
	// CURRENT set; _describe, zsh's lister, is replaced by a print of
	// what it was handed.
	"zsh": func(script string, c shellCase) string {
		var q []string
		for _, x := range append([]string{"closeload"}, c.words...) {
			q = append(q, shellQuote(x))
		}
		return fmt.Sprintf(`compdef() { : }
source %s
_describe() { print -rl -- "${completions[@]}" }
words=(%s) CURRENT=%d
_closeload
`, shellQuote(script), strings.Join(q, " "), len(c.words)+1)
	},
	// fish completes the line itself.
	"fish": func(script string, c shellCase) string {
		return fmt.Sprintf("source %s\ncomplete --do-complete %s\n", shellQuote(script), shellQuote("closeload "+strings.Join(c.words, " ")))
	},
}

// offered cuts the descriptions off what a shell printed: fish separates
// them with a tab, zsh's _describe with the first colon not escaped.
func offered(shell, out string) []string {
	var values []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		switch shell {
		case "fish":
			l, _, _ = strings.Cut(l, "\t")
		case "zsh":
			for i := 0; i < len(l); i++ {
				if l[i] == '\\' {
					i++
				} else if l[i] == ':' {
					l = l[:i]
					break
				}
			}
		}
		values = append(values, l)
	}
	return values
}

// TestShellCompletion installs the completion script of bash, zsh and fish
// as the README says and completes flag values through it, with the real
// binary answering. A shell that is not installed is skipped (.ci/run
// installs all three).
func TestShellCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		t.Run(shell, func(t *testing.T) {
			sh, err := exec.LookPath(shell)
			if err != nil {
				t.Skipf("%s is not installed", shell)
			}
			if shell == "bash" {
				if _, err := os.Stat("/usr/share/bash-completion/bash_completion"); err != nil {
					t.Skip("bash-completion is not installed")
				}
			}
			script := filepath.Join(t.TempDir(), "closeload."+shell)
			out, err := exec.Command(binary, "completion", shell).Output()
			if err != nil {
				t.Fatalf("closeload completion %s: %v", shell, err)
			}
			if err := os.WriteFile(script, out, 0o644); err != nil {
				t.Fatal(err)
			}
			for _, c := range shellCases {
				t.Run(c.name, func(t *testing.T) {
					args := map[string][]string{"bash": {"--norc", "--noprofile", "-c"}, "zsh": {"-f", "-c"}, "fish": {"--no-config", "-c"}}[shell]
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					cmd := exec.CommandContext(ctx, sh, append(args, shellDrivers[shell](script, c))...)
					cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(binary)+string(os.PathListSeparator)+os.Getenv("PATH"), "HOME="+t.TempDir())
					var stderr strings.Builder
					cmd.Stderr = &stderr
					out, err := cmd.Output()
					if err != nil {
						t.Fatalf("%s: %v\n%s", shell, err, stderr.String())
					}
					want := map[string][]string{"bash": c.bash, "zsh": c.zsh, "fish": c.fish}[shell]
					if got := offered(shell, string(out)); !slices.Equal(got, want) {
						t.Errorf("%s completing %q: got %q, want %q\n%s", shell, c.words, got, want, stderr.String())
					}
				})
			}
		})
	}
}
