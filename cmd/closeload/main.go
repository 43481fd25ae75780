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
	"os/signal"
	"syscall"

	"github.com/closeload/closeload/report"
	"github.com/spf13/cobra"
)

func main() {
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

func execute(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "closeload: %v\n", err)
	var u usageError
	if errors.As(err, &u) {
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
	return root
}

// wrapArgs makes cobra's positional-argument errors usage errors.
func wrapArgs(c *cobra.Command) {
	if c.Args == nil {
		c.Args = cobra.NoArgs
		if c.HasSubCommands() || c.Name() == "closeload" {
			c.Args = func(cmd *cobra.Command, args []string) error {
				if len(args) > 0 {
					return fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
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
