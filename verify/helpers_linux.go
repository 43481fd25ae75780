package verify

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// Helpers are small programs an experiment runs as a separate process in
// its own namespace, for claims about what a process's exit does. The
// closeload binary runs them as "closeload verify --helper NAME -- ARGS";
// the test binary through its TestMain.
var helpers = map[string]func(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error{
	"hold-server": holdServer,
	"listen-go":   listenGo,
}

// ErrUnknownHelper is returned for a helper name that does not exist.
var ErrUnknownHelper = errors.New("unknown verify helper")

// RunHelper runs the named helper until it is done.
func RunHelper(ctx context.Context, name string, args []string, stdin io.Reader, stdout io.Writer) error {
	h, ok := helpers[name]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownHelper, name)
	}
	return h(ctx, args, stdin, stdout)
}

// held keeps accepted connections reachable: a net.Conn that is garbage
// collected is closed by its finalizer, which would spoil a leak.
var held struct {
	sync.Mutex
	conns []net.Conn
}

// holdServer is a leaky server. Each argument is "ADDR/ka" (keepalive:
// first probe after 1 s idle, then every 1 s) or "ADDR/noka". It prints
// "ready", then reads every connection to EOF, prints "eof PORT" and never
// closes it. When its standard input ends it exits without closing
// anything: the kernel closes the descriptors, as on any exit.
func holdServer(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	var out sync.Mutex
	say := func(format string, a ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Fprintf(stdout, format+"\n", a...)
	}
	for _, spec := range args {
		addr, mode, ok := strings.Cut(spec, "/")
		if !ok || (mode != "ka" && mode != "noka") {
			return fmt.Errorf("hold-server: %q: want ADDR/ka or ADDR/noka", spec)
		}
		lc := net.ListenConfig{KeepAlive: -1}
		if mode == "ka" {
			lc.KeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: time.Second, Interval: time.Second, Count: 3}
		}
		ln, err := lc.Listen(ctx, "tcp4", addr)
		if err != nil {
			return err
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				held.Lock()
				held.conns = append(held.conns, c)
				held.Unlock()
				go func() {
					_, _ = io.Copy(io.Discard, c)
					say("eof %d", c.LocalAddr().(*net.TCPAddr).Port)
				}()
			}
		}()
	}
	say("ready")
	_, _ = io.Copy(io.Discard, bufio.NewReader(stdin))
	return nil
}

// listenGo is a server as most Go programs write it: net.Listen, which
// takes its backlog from net.core.somaxconn as this process first reads it.
// The one argument is the address; it prints "ready PORT LIMIT" (LIMIT is
// the accept-queue limit the kernel set), never accepts, and exits when its
// standard input ends.
func listenGo(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) != 1 {
		return fmt.Errorf("listen-go: want one ADDR argument, got %q", args)
	}
	ln, err := net.Listen("tcp4", args[0])
	if err != nil {
		return err
	}
	defer ln.Close()
	var limit int
	if err := rawFd(ln.(*net.TCPListener), func(fd int) (err error) { limit, err = listenLimit(fd); return err }); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ready %d %d\n", ln.Addr().(*net.TCPAddr).Port, limit)
	_, _ = io.Copy(io.Discard, stdin)
	return nil
}

// helperProc is a running helper process of an experiment.
type helperProc struct {
	stdin  io.WriteCloser
	lines  chan string
	exited chan error
	cancel context.CancelFunc
}

// startHelper starts the named helper through env and waits until it
// prints a line beginning with "ready" (returned) or d passes.
func startHelper(ctx context.Context, env *Env, d time.Duration, name string, args ...string) (*helperProc, string, error) {
	if env.Helper == nil {
		return nil, "", errors.New("no helper process available")
	}
	hctx, cancel := context.WithCancel(ctx)
	cmd := env.Helper(hctx, name, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		cancel()
		return nil, "", err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, "", fmt.Errorf("start helper %s: %w", name, err)
	}
	h := &helperProc{stdin: stdin, lines: make(chan string, 64), exited: make(chan error, 1), cancel: cancel}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case h.lines <- sc.Text():
			default: // nobody listens any more; keep draining
			}
		}
		close(h.lines)
		h.exited <- cmd.Wait()
	}()
	timeout := time.After(d)
	for {
		select {
		case l, ok := <-h.lines:
			if !ok {
				h.stop()
				return nil, "", fmt.Errorf("helper %s ended before it was ready", name)
			}
			if strings.HasPrefix(l, "ready") {
				return h, l, nil
			}
		case <-timeout:
			h.stop()
			return nil, "", fmt.Errorf("helper %s was not ready within %v", name, d)
		}
	}
}

// stop ends the helper's standard input, waits up to 3 s for it to exit,
// then kills it and waits for it to be reaped.
func (h *helperProc) stop() {
	h.stdin.Close()
	select {
	case <-h.exited:
	case <-time.After(3 * time.Second):
		h.cancel()
		<-h.exited
	}
	h.cancel()
}
