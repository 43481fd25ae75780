// Command closeload is a load generator and benchmark suite for mass TCP
// half-close on Linux. This package holds the command tree and flag parsing
// only; every decision a test could want to reach lives in a package.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/closeload/closeload/internal/suggest"
	"github.com/closeload/closeload/report"
	"github.com/closeload/closeload/runner"
	"github.com/spf13/cobra"
)

func main() {
	// A child of an isolated or multi-process run is this binary again.
	if code, ok := runner.ServeChild(); ok {
		os.Exit(code)
	}
	os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
}

// usageError marks an error in what the user typed: it exits with status 2,
// the convention of flag parsers, so scripts can tell it from a failed run.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

// usagef returns a usage error that names the flag and what it accepts.
func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// asUsage wraps err as a usage error, keeping nil as nil.
func asUsage(err error) error {
	if err == nil {
		return nil
	}
	return usageError{err}
}

// exitError carries a run's exit status (1 failed, 3 a threshold, 130/143
// interrupted); err, when set, is printed.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e exitError) Unwrap() error { return e.err }

// abortKey holds, in a command's context, the channel that closes at the
// second signal.
type abortKey struct{}

// abortOf is the command's abort channel (nil when none).
func abortOf(cmd *cobra.Command) <-chan struct{} {
	ch, _ := cmd.Context().Value(abortKey{}).(<-chan struct{})
	return ch
}

func execute(args []string, stdout, stderr io.Writer) int {
	ctx, abort, stop := runner.SignalContext(context.Background())
	defer stop()
	ctx = context.WithValue(ctx, abortKey{}, abort)
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(stderr, "closeload: %v\n", ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(stderr, "closeload: %v\n", planError(err))
	var u usageError
	if errors.As(planError(err), &u) {
		return 2
	}
	if errors.Is(err, report.ErrRegression) {
		return 3
	}
	return 1
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "closeload",
		Short: "Load generator and benchmark suite for mass TCP half-close on Linux",
		Long: `closeload opens and closes TCP connections in configurable close choreographies
(half-close, server-first, simultaneous, RST, leaks), samples kernel socket states and
counters, and compares runs made under different sysctls.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Without a RunE cobra would print help for a mistyped sub-command
		// and exit 0; a script must see the mistake.
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%s: %w (see '%s --help')", c.CommandPath(), err, c.CommandPath())}
	})
	root.AddCommand(
		newRunCmd(),
		newServeCmd(),
		newScenariosCmd(),
		newVersionCmd(),
		newWatchCmd(),
		newSysctlCmd(), newMatrixCmd(),
		newVerifyCmd(),
		newReportCmd(),
	)
	// Unknown sub-commands and wrong argument counts are usage errors too.
	for _, c := range root.Commands() {
		wrapArgs(c)
	}
	wrapArgs(root)
	registerCompletions(root)
	return root
}

// wrapArgs makes cobra's positional-argument errors usage errors, with a
// did-you-mean for a mistyped sub-command.
func wrapArgs(c *cobra.Command) {
	if c.Args == nil {
		c.Args = cobra.NoArgs
		if c.HasSubCommands() || c.Name() == "closeload" {
			c.Args = func(cmd *cobra.Command, args []string) error {
				if len(args) > 0 {
					msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
					var names []string
					for _, sub := range cmd.Commands() {
						names = append(names, sub.Name())
					}
					if s := suggest.Nearest(args[0], names); s != "" {
						msg += fmt.Sprintf("; did you mean %q?", s)
					}
					return errors.New(msg)
				}
				return nil
			}
		}
	}
	inner := c.Args
	c.Args = func(cmd *cobra.Command, args []string) error { return asUsage(inner(cmd, args)) }
	for _, sub := range c.Commands() {
		wrapArgs(sub)
	}
}
