// Package runner carries out one run end to end — sysctls, the built-in
// target, the workload, the sampler — and turns what they measured into a
// results.Run. cmd/closeload only parses flags into a runner.Options.
package runner

import (
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/closeload/closeload/results"
	"golang.org/x/sys/unix"
)

// Version is closeload's version; release builds set it with
// -ldflags "-X github.com/closeload/closeload/runner.Version=v1.2.3".
var Version = ""

// NewProvenance describes this process and machine, so every record says
// where it came from.
func NewProvenance(args []string) results.Provenance {
	p := results.Provenance{
		Tool:       "closeload",
		Version:    version(),
		GoVersion:  runtime.Version(),
		Cores:      runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		Args:       args,
		Namespace:  "host",
		PID:        os.Getpid(),
	}
	p.Hostname, _ = os.Hostname()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		p.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	return p
}

func version() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := bi.Main.Version
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if (v == "" || v == "(devel)") && rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		return "devel-" + rev + dirty
	}
	if v == "" {
		return "devel"
	}
	return strings.TrimPrefix(v, "v")
}
