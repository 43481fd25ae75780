package verify

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestCatalogue(t *testing.T) {
	seen := map[string]bool{}
	cs := Catalogue()
	if len(cs) < 19 {
		t.Fatalf("catalogue has %d claims, want at least 19", len(cs))
	}
	for _, c := range cs {
		t.Run(c.Name, func(t *testing.T) {
			if seen[c.Name] {
				t.Fatalf("duplicate claim %q", c.Name)
			}
			seen[c.Name] = true
			if c.Name == "" || strings.ContainsAny(c.Name, " ,") || c.Statement == "" || c.Source == "" || c.Run == nil {
				t.Fatalf("incomplete claim %+v", c)
			}
			got, err := Lookup(c.Name)
			if err != nil || got.Name != c.Name {
				t.Fatalf("Lookup(%q) = %v, %v", c.Name, got.Name, err)
			}
		})
	}
}

func TestLookupUnknown(t *testing.T) {
	_, err := Lookup("tw-recycle")
	if !errors.Is(err, ErrUnknownClaim) || !strings.Contains(err.Error(), "tw-reuse") {
		t.Fatalf("err = %v, want ErrUnknownClaim listing the names", err)
	}
}

// Outside a namespace made for it, nothing may touch sysctls or run.
func TestRefusesOutsideNamespace(t *testing.T) {
	env := &Env{}
	if err := env.Set("net.ipv4.tcp_fin_timeout=2"); !errors.Is(err, ErrNotIsolated) {
		t.Fatalf("Set outside a namespace: %v, want ErrNotIsolated", err)
	}
	c, _ := Lookup("fin-timeout-finwait2")
	r := Execute(context.Background(), c, env)
	if r.Verdict != Inconclusive || !strings.Contains(r.Error, ErrNotIsolated.Error()) {
		t.Fatalf("Execute outside a namespace: %+v", r)
	}
	if _, err := CheckIsolated(); !errors.Is(err, ErrNotIsolated) {
		t.Fatalf("CheckIsolated in the test process: %v, want ErrNotIsolated", err)
	}
}

func TestRunHelperUnknown(t *testing.T) {
	if err := RunHelper(context.Background(), "nope", nil, nil, nil); !errors.Is(err, ErrUnknownHelper) {
		t.Fatalf("err = %v", err)
	}
}

func TestExecuteRecoversPanic(t *testing.T) {
	c := Claim{Name: "boom", Statement: "s", Source: "test", Run: func(context.Context, *Env) Result { panic("kaboom") }}
	r := Execute(context.Background(), c, &Env{Isolated: true})
	if r.Verdict != Inconclusive || !strings.Contains(r.Error, "kaboom") || r.Claim != "boom" || r.Command != Command("boom") {
		t.Fatalf("result %+v", r)
	}
}
