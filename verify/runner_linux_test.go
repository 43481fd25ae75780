package verify

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/closeload/closeload/internal/nstest"
)

// TestRunAllIsolated goes the way closeload verify does: each claim is a
// child in its own fresh namespace that prints its result as JSON.
func TestRunAllIsolated(t *testing.T) {
	t.Parallel()
	var cs []Claim
	for _, n := range []string{"closewrite-twice", "halfclose-eof-epipe", "max-tw-buckets"} {
		c, err := Lookup(n)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	cs[2].Heavy = true // exercise the run-alone path
	var done []string
	rs, err := RunAll(context.Background(), cs, Options{Launch: testLauncher, Parallel: 2, Done: func(r Result) { done = append(done, r.Claim) }})
	if errors.Is(err, ErrNoNamespace) {
		nstest.Unavailable(t, err.Error())
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != 3 {
		t.Errorf("Done called for %v", done)
	}
	want := []Verdict{DoesNotHold, Holds, Holds}
	for i, r := range rs {
		if r.Claim != cs[i].Name || r.Verdict != want[i] || r.Error != "" {
			t.Errorf("result %d: %s %q (error %q), want %s %q", i, r.Claim, r.Verdict, r.Error, cs[i].Name, want[i])
		}
		wantNS := "isolated"
		if os.Geteuid() != 0 {
			wantNS = "isolated-userns"
		}
		if r.Namespace != wantNS {
			t.Errorf("%s ran in %q, want %q", r.Claim, r.Namespace, wantNS)
		}
	}
}
