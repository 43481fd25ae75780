package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/closeload/closeload/sysctl"
)

// ClaimTimeout bounds one experiment; every experiment is designed to end
// well before it (the longest waits about 15 s).
const ClaimTimeout = 75 * time.Second

// Execute runs one claim's experiment in the current process, which must be
// in the claim's own namespace (env.Isolated), and returns its stamped
// result. A panic in an experiment becomes an inconclusive result, not a
// crash of the table.
func Execute(ctx context.Context, c Claim, env *Env) (res Result) {
	if !env.Isolated {
		return stamp(failed(Result{}, ErrNotIsolated), c)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, ClaimTimeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			res = failed(Result{}, fmt.Errorf("experiment panicked: %v", p))
		}
		res = stamp(res, c)
		res.Seconds = roundTo(time.Since(start).Seconds(), 0.1)
	}()
	return c.Run(ctx, env)
}

// Launcher returns a command that runs one claim as a child in a fresh
// network namespace and prints its Result as JSON on stdout (RunChild).
type Launcher func(ctx context.Context, claim string) *exec.Cmd

// Options tell RunAll how to run the catalogue.
type Options struct {
	Launch Launcher
	// Parallel is how many light claims run at once (each in its own
	// namespace); heavy claims (rates) always run alone afterwards.
	Parallel int
	// Done, when set, is called as each result arrives (progress output).
	Done func(Result)
}

// RunAll runs the claims, each in its own namespace through opt.Launch, and
// returns their results in the order given. It fails as a whole only when no
// namespace can be created at all (ErrNoNamespace).
func RunAll(ctx context.Context, claims []Claim, opt Options) ([]Result, error) {
	if opt.Parallel < 1 {
		opt.Parallel = 1
	}
	results := make([]Result, len(claims))
	var light, heavy []int
	for i, c := range claims {
		if c.Heavy {
			heavy = append(heavy, i)
		} else {
			light = append(light, i)
		}
	}
	var (
		mu     sync.Mutex
		noNS   error
		runOne = func(i int) {
			r, err := runIsolated(ctx, claims[i], opt.Launch)
			mu.Lock()
			defer mu.Unlock()
			if errors.Is(err, ErrNoNamespace) && noNS == nil {
				noNS = err
			}
			results[i] = r
			if opt.Done != nil {
				opt.Done(r)
			}
		}
		next = make(chan int)
		wg   sync.WaitGroup
	)
	for w := 0; w < opt.Parallel && w < len(light); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				runOne(i)
			}
		}()
	}
	for _, i := range light {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, i := range heavy {
		runOne(i)
	}
	if noNS != nil {
		return results, noNS
	}
	return results, ctx.Err()
}

// runIsolated runs one claim's child and decodes its result.
func runIsolated(ctx context.Context, c Claim, launch Launcher) (Result, error) {
	base := stamp(Result{}, c)
	if err := ctx.Err(); err != nil {
		return failed(base, fmt.Errorf("not started: %w", err)), nil
	}
	ctx, cancel := context.WithTimeout(ctx, ClaimTimeout+10*time.Second)
	defer cancel()
	start := time.Now()
	cmd := launch(ctx, c.Name)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	base.Seconds = roundTo(time.Since(start).Seconds(), 0.1)
	if err != nil && cmd.ProcessState == nil && ctx.Err() == nil {
		err = fmt.Errorf("%w: %w", ErrNoNamespace, sysctl.ExplainStart(err))
		return failed(base, err), err
	}
	var r Result
	if derr := json.Unmarshal(lastLine(stdout.Bytes()), &r); derr != nil || r.Claim != c.Name {
		why := fmt.Errorf("child gave no result (%v): %s", err, tail(stderr.String(), 400))
		return failed(base, why), nil
	}
	return r, nil
}

// RunChild is the child's side: it checks that it is isolated, brings
// loopback up, runs the claim and writes its Result as one JSON line.
func RunChild(ctx context.Context, name string, w io.Writer, helper func(ctx context.Context, name string, args ...string) *exec.Cmd) error {
	c, err := Lookup(name)
	if err != nil {
		return err
	}
	mode, err := CheckIsolated()
	if err != nil {
		return err
	}
	if err := sysctl.PrepareIsolatedChild(); err != nil {
		return err
	}
	env := &Env{Isolated: true, Helper: helper}
	r := Execute(ctx, c, env)
	r.Namespace = mode
	return json.NewEncoder(w).Encode(r)
}

func lastLine(b []byte) []byte {
	b = bytes.TrimSpace(b)
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return b[i+1:]
	}
	return b
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
