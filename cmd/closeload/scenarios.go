package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/closeload/closeload/workload"
	"github.com/spf13/cobra"
)

func newScenariosCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "scenarios",
		Short: "List the close choreographies closeload can run",
		RunE: func(cmd *cobra.Command, args []string) error {
			if asJSON {
				e := json.NewEncoder(cmd.OutOrStdout())
				e.SetIndent("", "  ")
				return e.Encode(workload.Catalogue())
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tTIME_WAIT ON\tSHOWS\tCLIENT\tTARGET")
			for _, s := range workload.Catalogue() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, s.TimeWaitOn, s.Shows, s.Client, s.Target)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the catalogue as JSON")
	return cmd
}
