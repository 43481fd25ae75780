package main

import (
	"fmt"

	"github.com/closeload/closeload/runner"
	"github.com/spf13/cobra"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print closeload's version, Go version and kernel",
		RunE: func(cmd *cobra.Command, args []string) error {
			p := runner.NewProvenance(nil)
			fmt.Fprintf(cmd.OutOrStdout(), "closeload %s (%s, kernel %s, %d cores)\n", p.Version, p.GoVersion, p.Kernel, p.Cores)
			return nil
		},
	}
}
