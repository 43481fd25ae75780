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
