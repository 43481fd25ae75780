//go:build !linux

package main

import (
	"github.com/closeload/closeload/runner"
	"github.com/spf13/cobra"
)

// newServeCmd and newVerifyCmd need Linux's system calls; elsewhere they
// say so, and the rest of closeload (report, sysctl list) works.
func newServeCmd() *cobra.Command { return unsupported("serve") }

func newVerifyCmd() *cobra.Command { return unsupported("verify") }

func unsupported(name string) *cobra.Command {
	return &cobra.Command{
		Use:   name,
		Short: "Needs Linux",
		RunE:  func(*cobra.Command, []string) error { return runner.ErrUnsupported },
	}
}

// claimCandidates: no claims where verify cannot run.
func claimCandidates() []candidate { return nil }
