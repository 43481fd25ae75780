// Package verify decides claims of TCP close folklore by experiment. Each
// claim runs one bounded experiment inside a fresh network namespace (so
// sysctls can be changed without touching the host) and gets a verdict from
// what the kernel showed while it ran: counter deltas, socket states,
// errnos, timers. Nothing in a verdict comes from what the code assumes.
package verify

import (
	"context"
	"errors"
	"fmt"
)

// Verdict is the outcome of one claim's experiment.
type Verdict string

// The verdicts. HoldsOnlyWhen comes with a Result.Condition; Inconclusive is
// for an observation that does not decide the claim (the numbers are shown).
const (
	Holds         Verdict = "holds"
	DoesNotHold   Verdict = "does not hold"
	HoldsOnlyWhen Verdict = "holds only when"
	Inconclusive  Verdict = "inconclusive"
)

// Sentinel errors of the catalogue and of the runner.
var (
	ErrUnknownClaim = errors.New("unknown claim")
	ErrNotIsolated  = errors.New("refusing to change sysctls outside a network namespace made for this experiment")
	ErrNoNamespace  = errors.New("cannot create a network namespace")
)

// Claim is one statement of folklore with the experiment that decides it.
type Claim struct {
	// Name is what --claim takes.
	Name string `json:"name"`
	// Statement is the claim as people make it.
	Statement string `json:"statement"`
	// Source says where the claim comes from.
	Source string `json:"source"`
	// Heavy marks experiments whose measurement is a rate: the runner gives
	// them the machine to themselves.
	Heavy bool `json:"-"`
	// Run carries out the experiment inside a fresh network namespace and
	// returns the verdict with its evidence. It must return within about a
	// minute and leave no goroutine behind.
	Run func(ctx context.Context, env *Env) Result `json:"-"`
}

// Evidence is one thing the kernel showed during an experiment.
type Evidence struct {
	What  string `json:"what"`
	Value string `json:"value"`
}

// Result is a claim's verdict with the observations it rests on.
type Result struct {
	Claim     string  `json:"claim"`
	Statement string  `json:"statement"`
	Source    string  `json:"source"`
	Verdict   Verdict `json:"verdict"`
	// Condition completes HoldsOnlyWhen ("the socket is orphaned").
	Condition string `json:"condition,omitempty"`
	// Finding is one sentence saying what was observed.
	Finding  string     `json:"finding"`
	Evidence []Evidence `json:"evidence"`
	// Figures are the evidence's key numbers by name (counts, seconds), so
	// tests and scripts can check them as ranges without parsing the text.
	Figures map[string]float64 `json:"figures,omitempty"`
	// Command reproduces the experiment.
	Command string `json:"command"`
	// Seconds is how long the experiment took.
	Seconds float64 `json:"seconds"`
	// Namespace is "isolated" or "isolated-userns".
	Namespace string `json:"namespace,omitempty"`
	// Error is set when the experiment could not be carried out; the verdict
	// is then Inconclusive.
	Error string `json:"error,omitempty"`
}

// VerdictText renders the verdict with its condition, as tables show it.
func (r Result) VerdictText() string {
	if r.Verdict == HoldsOnlyWhen && r.Condition != "" {
		return string(r.Verdict) + " " + r.Condition
	}
	return string(r.Verdict)
}

// add appends one piece of evidence, formatting the value.
func (r *Result) add(what, format string, a ...any) {
	r.Evidence = append(r.Evidence, Evidence{What: what, Value: fmt.Sprintf(format, a...)})
}

// figure records one key number of the evidence.
func (r *Result) figure(name string, v float64) {
	if r.Figures == nil {
		r.Figures = map[string]float64{}
	}
	r.Figures[name] = v
}

// failed turns an experiment that could not run into an inconclusive result
// that says why.
func failed(r Result, err error) Result {
	r.Verdict = Inconclusive
	r.Error = err.Error()
	if r.Finding == "" {
		r.Finding = "the experiment could not be completed: " + err.Error()
	}
	return r
}

// Command returns the command line that reproduces one claim.
func Command(name string) string { return "closeload verify --claim " + name }

// stamp fills in a result's identity from its claim; experiments leave it
// to the runner so that a claim's Run need not refer to its own Claim.
func stamp(r Result, c Claim) Result {
	r.Claim, r.Statement, r.Source, r.Command = c.Name, c.Statement, c.Source, Command(c.Name)
	if r.Verdict == "" {
		r.Verdict = Inconclusive
	}
	return r
}

// roundTo rounds v to a multiple of step, for figures shown to people.
func roundTo(v, step float64) float64 {
	return float64(int64(v/step+0.5)) * step
}
