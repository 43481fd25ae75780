package binarytest

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Serve starts cmd, a `closeload serve` command line (possibly wrapped, as
// in `ip netns exec NS closeload serve ...`, as long as the PID ends up
// closeload's), and waits until it says where it listens. It returns the
// address of its first "serving SCENARIO on ADDR" line and stop, which sends
// SIGINT to that PID and returns everything the process printed. Cleanup
// kills it, by its PID, if the test did not stop it.
func Serve(tb testing.TB, cmd *exec.Cmd) (addr string, stop func() string) {
	tb.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	var mu sync.Mutex
	var text strings.Builder
	first := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			text.WriteString(line + "\n")
			mu.Unlock()
			if strings.HasPrefix(line, "serving ") {
				if _, a, ok := strings.Cut(line, " on "); ok {
					select {
					case first <- a:
					default:
					}
				}
			}
		}
	}()
	wait := func() {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = cmd.Wait()
	}
	stopped := false
	tb.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			wait()
		}
	})
	select {
	case addr = <-first:
	case <-done:
		tb.Fatalf("closeload serve ended: %s", stderr.String())
	case <-time.After(10 * time.Second):
		tb.Fatal("closeload serve did not say where it listens within 10s")
	}
	return addr, func() string {
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGINT)
		wait()
		mu.Lock()
		defer mu.Unlock()
		return text.String() + stderr.String()
	}
}
