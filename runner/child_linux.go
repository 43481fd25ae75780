package runner

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/results"
	"github.com/closeload/closeload/sysctl"
)

// childExe is the binary a child runs: this one.
var childExe = os.Executable

// childProc is the parent's handle on one child.
type childProc struct {
	cmd  *exec.Cmd
	ctl  *os.File // the child's descriptor 3, our writing end
	mu   sync.Mutex
	live collector.WorkloadCounts
	res  *childResult
	// listening and opened close when the child says so; gone when its
	// message pipe ends.
	listening, opened, gone chan struct{}
	waitErr                 error
	exit                    int
}

// startChild starts this binary as a child playing role with plan p; in a
// fresh network namespace when isolated. Its standard error goes to stderr.
func startChild(ctx context.Context, p *Plan, role string, isolated bool, stderr io.Writer) (*childProc, error) {
	if !reexecReady.Load() {
		return nil, ErrNoReexec
	}
	exe, err := childExe()
	if err != nil {
		return nil, fmt.Errorf("find own binary: %w", err)
	}
	var cmd *exec.Cmd
	if isolated {
		cmd = sysctl.IsolatedCommand(ctx, nil)
		cmd.Path, cmd.Args = exe, []string{exe}
	} else {
		cmd = exec.CommandContext(ctx, exe)
		cmd.Env = os.Environ()
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = sysctl.ChildStopDelay
	}
	cmd.Env = append(withoutEnv(cmd.Env, childEnv), childEnv+"="+role)
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = stderr, stderr
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	msgR, msgW, err := os.Pipe()
	if err != nil {
		ctlR.Close()
		ctlW.Close()
		return nil, err
	}
	cmd.ExtraFiles = []*os.File{ctlR, msgW} // descriptors 3 and 4
	c := &childProc{cmd: cmd, ctl: ctlW, listening: make(chan struct{}), opened: make(chan struct{}), gone: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		ctlR.Close()
		ctlW.Close()
		msgR.Close()
		msgW.Close()
		if isolated {
			return nil, sysctl.ExplainStart(err)
		}
		return nil, err
	}
	ctlR.Close()
	msgW.Close()
	go c.read(msgR)
	// Written after the start: a plan may be larger than a pipe's buffer.
	if _, err := ctlW.Write(encodeLine(childRequest{Plan: *p})); err != nil {
		_ = cmd.Process.Kill()
		_, _ = c.wait()
		return nil, fmt.Errorf("hand the plan to the child: %w", err)
	}
	return c, nil
}

// withoutEnv drops name from an environment.
func withoutEnv(env []string, name string) []string {
	out := env[:0:0]
	for _, e := range env {
		if len(e) > len(name) && e[:len(name)+1] == name+"=" {
			continue
		}
		out = append(out, e)
	}
	return out
}

// read follows the child's messages until its pipe ends.
func (c *childProc) read(r *os.File) {
	defer close(c.gone)
	defer r.Close()
	var lOnce, oOnce sync.Once
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<30) // a record can be large
	for sc.Scan() {
		var m childMessage
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			continue
		}
		switch m.Ev {
		case "listening":
			lOnce.Do(func() { close(c.listening) })
		case "opened":
			oOnce.Do(func() { close(c.opened) })
		case "status":
			if m.Counts != nil {
				c.mu.Lock()
				c.live = *m.Counts
				c.mu.Unlock()
			}
		case "result":
			c.mu.Lock()
			c.res = m.Result
			c.mu.Unlock()
		}
	}
}

// counts is the child's latest live counts.
func (c *childProc) counts() collector.WorkloadCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live
}

// tell sends a control line.
func (c *childProc) tell(ev string, at time.Time) {
	_, _ = c.ctl.Write(encodeLine(childControl{Ev: ev, At: at}))
}

// wait waits for the child to exit and returns its result; a child that
// died without one is an error naming its exit status.
func (c *childProc) wait() (*childResult, error) {
	c.waitErr = c.cmd.Wait()
	<-c.gone
	c.ctl.Close()
	c.exit = c.cmd.ProcessState.ExitCode()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.res == nil {
		if c.waitErr != nil {
			return nil, fmt.Errorf("child process ended without a record: %w", c.waitErr)
		}
		return nil, errors.New("child process ended without a record")
	}
	return c.res, nil
}

// childHook, when set (by tests), sees a child's plan first and may fail
// it.
var childHook func(*Plan) error

// childLink is a child's side of the pipes to its parent.
type childLink struct {
	role  string
	mu    sync.Mutex
	out   *os.File
	lines chan childControl
}

func (l *childLink) send(m childMessage) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.out.Write(encodeLine(m))
}

// await returns the time of the parent's next ev line.
func (l *childLink) await(ctx context.Context, ev string) (time.Time, error) {
	for {
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case c, ok := <-l.lines:
			if !ok {
				return time.Time{}, errParentGone
			}
			if c.Ev == ev {
				return c.At, nil
			}
		}
	}
}

// errParentGone is returned when a child's parent closed its control pipe.
var errParentGone = errors.New("the parent process went away")

// report sends the workload's counts every interval until ctx ends, and
// once more when stopped.
func (l *childLink) report(ctx context.Context, interval time.Duration, counts func() collector.WorkloadCounts) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(max(interval/2, 10*time.Millisecond))
		defer t.Stop()
		for {
			w := counts()
			l.send(childMessage{Ev: "status", Counts: &w})
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		cancel()
		<-done
		w := counts()
		l.send(childMessage{Ev: "status", Counts: &w})
	}
}

// ServeChild makes this binary able to run the children of isolated and
// multi-process runs, and runs one when this process is such a child: it
// then returns the exit status to end with and true. Call it first thing
// in main (or TestMain), before anything else reads the arguments:
//
//	if code, ok := runner.ServeChild(); ok {
//		os.Exit(code)
//	}
func ServeChild() (code int, served bool) {
	reexecReady.Store(true)
	role := os.Getenv(childEnv)
	if role == "" {
		return 0, false
	}
	os.Unsetenv(childEnv)
	ctlF, outF := os.NewFile(3, "closeload-control"), os.NewFile(4, "closeload-messages")
	link := &childLink{role: role, out: outF, lines: make(chan childControl, 4)}
	rd := bufio.NewReaderSize(ctlF, 64<<10)
	first, err := rd.ReadBytes('\n')
	var req childRequest
	if err == nil {
		err = json.Unmarshal(first, &req)
	}
	if err != nil {
		link.send(childMessage{Ev: "result", Result: &childResult{Err: "child: reading the plan: " + err.Error()}})
		return 1, true
	}
	go func() {
		defer close(link.lines)
		sc := bufio.NewScanner(rd)
		for sc.Scan() {
			var c childControl
			if json.Unmarshal(sc.Bytes(), &c) == nil {
				link.lines <- c
			}
		}
	}()
	if childHook != nil {
		if err := childHook(&req.Plan); err != nil {
			link.send(childMessage{Ev: "result", Result: &childResult{Err: err.Error()}})
			return 1, true
		}
	}
	ctx, abort, stop := SignalContext(context.Background())
	defer stop()
	p := req.Plan
	// The parent validated the plan; a shard's plan takes its slice here.
	var rec *results.Run
	err = p.Validate()
	if err == nil {
		rec, err = execute(ctx, &p, link, Output{Stdout: os.Stderr, Stderr: os.Stderr, Progress: role == roleIsolated, Abort: abort})
	}
	res := &childResult{Record: rec}
	if err != nil {
		res.Err, res.Usage = err.Error(), errors.Is(err, ErrUsage)
	}
	link.send(childMessage{Ev: "result", Result: res})
	outF.Close()
	return ExitCode(rec, err), true
}
