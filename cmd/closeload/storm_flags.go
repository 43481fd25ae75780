package main

import (
	"github.com/closeload/closeload/runner"
	"github.com/spf13/pflag"
)

// addStormFlags defines the flags of the storm shape and of runs beyond one
// process; part of the run flags.
func addStormFlags(fs *pflag.FlagSet, s *runner.StormSpec) {
	fs.IntVar(&s.Storm, "storm", s.Storm, "storm shape: open N connections (paced by --rate if given), hold them for --hold, then half-close them all within --storm-window")
	fs.DurationVar(&s.StormWindow, "storm-window", s.StormWindow, "spread the storm's FINs evenly over this window (0 = all at once)")
	fs.StringVar(&s.Closer, "closer", s.Closer, "side that sends the storm's FINs: client, server or both (default: the scenario's)")
	fs.StringVar(&s.Procs, "procs", s.Procs, "run as P processes, each a shard, merged into one record; auto = as many as the descriptor limit needs")
	fs.StringVar(&s.StormCloseAt, "storm-close-at", s.StormCloseAt, "close time (RFC 3339) shared by the shards of a storm on several hosts (default: --hold after the opening)")
	fs.BoolVar(&s.ReusePort, "reuse-port", s.ReusePort, "set SO_REUSEPORT on the built-in target's listeners (set by --procs for its processes)")
	_ = fs.MarkHidden("reuse-port")
}
