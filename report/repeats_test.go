package report

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/closeload/closeload/internal/binarytest"
	"github.com/closeload/closeload/internal/nstest"
)

// TestRepeatsShareAPlace runs the same flags twice in the namespace the test
// made (the run's "host" namespace) and twice isolated in a fresh one: the
// report must see two variants named by where they ran, not four repeats of
// one, while the two runs of each place stay repeats.
func TestRepeatsShareAPlace(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		bin := binarytest.Closeload(t)
		dir := t.TempDir()
		var paths []string
		for i, extra := range [][]string{{"--host-netns"}, {"--isolate"}, {"--host-netns"}, {"--isolate"}} {
			out := filepath.Join(dir, "r"+string(rune('0'+i))+".json")
			args := append([]string{"run", "-s", "client-halfclose", "-d", "500ms", "--interval", "100ms", "--grace", "500ms", "--out", out}, extra...)
			if b, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
				t.Fatalf("%v: %v\n%s", args, err, b)
			}
			paths = append(paths, out)
		}
		c := loadCompare(t, paths, Options{})
		if len(c.Variants) != 2 {
			names := make([]string, len(c.Variants))
			for i, v := range c.Variants {
				names[i] = v.Name
			}
			t.Fatalf("%d variants %v, want 2: host and isolated runs are not repeats of each other", len(c.Variants), names)
		}
		for _, v := range c.Variants {
			if len(v.Runs) != 2 {
				t.Errorf("variant %s has %d runs, want 2", v.Name, len(v.Runs))
			}
			if !strings.HasPrefix(v.Name, "namespace=") {
				t.Errorf("variant %q is not named by what differs (the namespace)", v.Name)
			}
		}
		if c.Variants[0].Name == c.Variants[1].Name {
			t.Errorf("both variants are named %q", c.Variants[0].Name)
		}
	})
}
