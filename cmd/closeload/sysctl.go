package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"text/tabwriter"

	"github.com/closeload/closeload/sysctl"
	"github.com/spf13/cobra"
)

// newSysctlCmd is `closeload sysctl`: the registry of known keys with their
// current values, and the recovery of host-mode changes after a crash.
func newSysctlCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "sysctl",
		Short: "List the kernel settings closeload knows, or restore host settings after a crash",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef("%s: want a sub-command: list or restore (see '%s --help')", cmd.CommandPath(), cmd.CommandPath())
		},
	}
	c.AddCommand(newSysctlListCmd(), newSysctlRestoreCmd())
	return c
}

// sysctlListEntry is one row of `closeload sysctl list --json`.
type sysctlListEntry struct {
	sysctl.Key
	Value   string `json:"value,omitempty"`
	Present bool   `json:"present"`
}

func newSysctlListCmd() *cobra.Command {
	var asJSON bool
	procRoot := sysctl.DefaultProcRoot
	c := &cobra.Command{
		Use:   "list",
		Short: "Show every known sysctl with its current value, scope, range and meaning",
		Long: `list shows the kernel settings closeload knows: their current value in this
process's network namespace, whether the kernel keeps them per network namespace
(settable in isolated variants) or for the whole host (global: only with
--host-sysctl), the values accepted, and what they really do. A global key reads
"(not here)" inside a network namespace: the kernel shows it only on the host.`,
		Example: `  closeload sysctl list
  closeload sysctl list --json | jq '.[] | select(.scope == "global")'`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var rows []sysctlListEntry
			for _, k := range sysctl.Keys() {
				v, err := sysctl.Read(procRoot, k.Name)
				rows = append(rows, sysctlListEntry{Key: k, Value: v, Present: err == nil})
			}
			if asJSON {
				e := json.NewEncoder(cmd.OutOrStdout())
				e.SetIndent("", "  ")
				return e.Encode(rows)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY\tVALUE\tSCOPE\tACCEPTS\tMEANING")
			for _, r := range rows {
				v := r.Value
				if !r.Present {
					v = "(not here)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, v, r.Scope, accepts(r.Key), r.Meaning)
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the registry and values as JSON")
	c.Flags().StringVar(&procRoot, "proc", procRoot, "where /proc is mounted")
	_ = c.Flags().MarkHidden("proc")
	return c
}

// accepts renders a key's shape and range: "0..2", "2 × 1..65535 ascending".
func accepts(k sysctl.Key) string {
	s := fmt.Sprintf("%d..%d", k.Min, k.Max)
	if k.Fields > 1 {
		s = fmt.Sprintf("%d × %s", k.Fields, s)
		if k.Ascending {
			s += " ascending"
		}
	}
	if k.Unit != "" {
		s += " " + k.Unit
	}
	return s
}

func newSysctlRestoreCmd() *cobra.Command {
	procRoot := sysctl.DefaultProcRoot
	c := &cobra.Command{
		Use:   "restore JOURNAL",
		Short: "Put back the host sysctls a killed --host-sysctl run left changed",
		Long: `restore reads the journal a --host-sysctl run wrote before it changed anything
(by default /run/closeload/host-sysctl.json, one for the whole host) and puts back the old
values. A run restores by itself on exit, Ctrl-C, SIGTERM and panic; restore is for
kill -9, a crash or a power cut of the process. It refuses, changing nothing, a
journal that is damaged, that was written before the last reboot (the kernel reset
the values then), or in another network namespace. A key someone else changed
since the run set it is left alone and named.`,
		Example: `  closeload sysctl restore /run/closeload/host-sysctl.json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("%s: want one JOURNAL, the file a --host-sysctl run names in its messages (by default /run/closeload/host-sysctl.json)", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			j, err := sysctl.LoadJournal(path)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("restore: no journal at %s: nothing to restore (a run that ended normally removes its journal)", path)
				}
				return err
			}
			err = sysctl.RestoreJournal(path, procRoot)
			if err != nil && !errors.Is(err, sysctl.ErrChangedSince) {
				return err
			}
			for _, e := range j.Entries {
				now, rerr := sysctl.Read(procRoot, e.Key)
				if rerr == nil && now == e.Old {
					fmt.Fprintf(cmd.OutOrStdout(), "restored %s = %s (the run had set %s)\n", e.Key, e.Old, e.New)
				}
			}
			return err
		},
	}
	c.Flags().StringVar(&procRoot, "proc", procRoot, "where /proc is mounted")
	_ = c.Flags().MarkHidden("proc")
	return c
}
