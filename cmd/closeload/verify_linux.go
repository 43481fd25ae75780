package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/closeload/closeload/verify"
	"github.com/spf13/cobra"
)

func newVerifyCmd() *cobra.Command {
	var (
		claims   []string
		list     bool
		format   string
		parallel int
		child    bool
		helper   string
	)
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Decide TCP close folklore by experiment, each claim in a fresh network namespace",
		Long: `verify runs one bounded experiment per claim about TCP close behaviour, each in a
network namespace of its own (sysctls are changed there only, never on the host), and
prints a verdict table: holds, does not hold, holds only when ..., or inconclusive, with
the evidence the kernel showed (counter deltas, socket states, errnos, timers) and the
command that reproduces it. Root, or a user allowed user namespaces, can run it.`,
		Example: `  closeload verify
  closeload verify --claim tw-reuse,fin-timeout-finwait2
  closeload verify --list
  closeload verify --format markdown > verdicts.md`,
		Args: func(cmd *cobra.Command, args []string) error {
			if helper == "" && len(args) > 0 {
				return fmt.Errorf("verify takes no arguments, got %q (claims go to --claim)", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if helper != "" {
				return verify.RunHelper(ctx, helper, args, os.Stdin, cmd.OutOrStdout())
			}
			if !slices.Contains(verify.Formats, format) {
				return usagef("--format %q: accepted: %s", format, strings.Join(verify.Formats, ", "))
			}
			if parallel < 1 || parallel > 16 {
				return usagef("--parallel %d: accepted: 1 to 16 claims at once", parallel)
			}
			selected := verify.Catalogue()
			if len(claims) > 0 {
				selected = selected[:0]
				for _, name := range claims {
					c, err := verify.Lookup(strings.TrimSpace(name))
					if err != nil {
						return usagef("--claim: %v", err)
					}
					selected = append(selected, c)
				}
			}
			if child {
				if len(selected) != 1 || len(claims) != 1 {
					return usagef("--child: runs exactly one --claim (it is how verify runs each claim in its namespace)")
				}
				return verify.RunChild(ctx, selected[0].Name, cmd.OutOrStdout(), cliHelper)
			}
			if list {
				return listClaims(cmd, selected, format)
			}
			return runVerify(ctx, cmd, selected, format, parallel)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&claims, "claim", nil, "run only these claims (comma-separated or repeated; see --list)")
	f.BoolVar(&list, "list", false, "list the claims and exit")
	f.StringVar(&format, "format", "text", "output format: "+strings.Join(verify.Formats, ", "))
	f.IntVar(&parallel, "parallel", 4, "claims run at once, each in its own namespace (rate measurements always run alone)")
	f.BoolVar(&child, "child", false, "internal: run one claim inside the current (fresh) namespace and print its result as JSON")
	f.StringVar(&helper, "helper", "", "internal: run a helper process of an experiment")
	_ = f.MarkHidden("child")
	_ = f.MarkHidden("helper")
	return cmd
}

// cliHelper starts an experiment's helper process as this binary, in the
// caller's namespace.
func cliHelper(ctx context.Context, name string, args ...string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	cmd := exec.CommandContext(ctx, exe, append([]string{"verify", "--helper", name, "--"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

func runVerify(ctx context.Context, cmd *cobra.Command, claims []verify.Claim, format string, parallel int) error {
	start := time.Now()
	stderr := cmd.ErrOrStderr()
	results, err := verify.RunAll(ctx, claims, verify.Options{
		Parallel: parallel,
		Launch: func(ctx context.Context, claim string) *exec.Cmd {
			return verify.IsolatedCommand(ctx, "verify", "--claim", claim, "--child")
		},
		Done: func(r verify.Result) {
			fmt.Fprintf(stderr, "closeload verify: %-22s %s (%.1f s)\n", r.Claim, r.VerdictText(), r.Seconds)
		},
	})
	if errors.Is(err, verify.ErrNoNamespace) {
		return err
	}
	rep := verify.NewReport(results, time.Since(start).Seconds())
	if werr := verify.Write(cmd.OutOrStdout(), format, rep); werr != nil {
		return werr
	}
	if err != nil {
		return err
	}
	var broken []string
	for _, r := range results {
		if r.Error != "" {
			broken = append(broken, r.Claim)
		}
	}
	if len(broken) > 0 {
		return fmt.Errorf("%d claim(s) could not be carried out: %s", len(broken), strings.Join(broken, ", "))
	}
	return nil
}

func listClaims(cmd *cobra.Command, claims []verify.Claim, format string) error {
	out := cmd.OutOrStdout()
	switch format {
	case "json":
		e := json.NewEncoder(out)
		e.SetIndent("", "  ")
		return e.Encode(claims)
	case "markdown":
		fmt.Fprintln(out, "| Claim | Statement | Source |")
		fmt.Fprintln(out, "|---|---|---|")
		for _, c := range claims {
			fmt.Fprintf(out, "| %s | %s | %s |\n", c.Name, c.Statement, c.Source)
		}
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CLAIM\tSOURCE\tSTATEMENT")
	for _, c := range claims {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, c.Source, c.Statement)
	}
	return tw.Flush()
}

// claimCandidates are the claims for completion.
func claimCandidates() []candidate {
	var out []candidate
	for _, c := range verify.Catalogue() {
		out = append(out, candidate{c.Name, c.Statement})
	}
	return out
}
