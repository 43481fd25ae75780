// Package nstest runs a test's body in a fresh network namespace, so tests
// can churn connections, read per-namespace counters exactly and change
// sysctls without touching the host. The test binary re-executes itself with
// CLONE_NEWNET (and CLONE_NEWUSER when not root); the child brings loopback up
// and runs only the named test.
package nstest

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/closeload/closeload/kernel"
)

// insideEnv names the test that the re-executed child is to run inside the
// namespace; the value is the test's full name.
const insideEnv = "CLOSELOAD_NSTEST_INSIDE"

// RequireEnv, when "1", turns a skip for lack of namespace permission into a
// failure: CI sets it so namespace tests can never silently not run.
const RequireEnv = "CLOSELOAD_REQUIRE_NETNS"

// Inside reports whether this process is a child started by Run.
func Inside() bool { return os.Getenv(insideEnv) != "" }

// Run runs body inside a fresh network namespace with loopback up. It must
// be called from a top-level test (not a subtest), as the first thing the test
// does; body may use t.Run freely.
func Run(t *testing.T, body func(t *testing.T)) {
	t.Helper()
	if os.Getenv(insideEnv) == t.Name() {
		if err := LoopbackUp(); err != nil {
			t.Fatalf("nstest: bring loopback up: %v", err)
		}
		body(t)
		return
	}
	if strings.Contains(t.Name(), "/") {
		t.Fatalf("nstest.Run must be called from a top-level test, not %s", t.Name())
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.count=1")
	if testing.Verbose() {
		cmd.Args = append(cmd.Args, "-test.v")
	}
	if d, ok := t.Deadline(); ok {
		_ = d // the parent's deadline bounds the child through the parent's own timeout
	}
	cmd.Env = append(os.Environ(), insideEnv+"="+t.Name())
	cmd.SysProcAttr = Attr()
	out, err := cmd.CombinedOutput()
	if err != nil && cmd.ProcessState == nil {
		Unavailable(t, fmt.Sprintf("cannot create a network namespace: %v", err))
		return
	}
	text := string(out)
	if strings.Contains(text, "--- SKIP") && !strings.Contains(text, "--- FAIL") && err == nil {
		t.Log(text)
		t.Skip("skipped inside the namespace (see log)")
	}
	if err != nil {
		t.Fatalf("in a fresh network namespace: %v\n%s", err, text)
	}
	if testing.Verbose() {
		t.Log(text)
	}
}

// Attr returns the process attributes that start a child in a fresh network
// namespace: CLONE_NEWNET as root, CLONE_NEWUSER|CLONE_NEWNET with the
// caller's uid and gid mapped to root inside otherwise.
func Attr() *syscall.SysProcAttr {
	a, _ := kernel.IsolationAttr()
	return a
}

// Unavailable skips the test with reason, or fails it when RequireEnv is set.
func Unavailable(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s (and %s=1 requires namespace tests to run)", reason, RequireEnv)
	}
	t.Skip(reason)
}

// LoopbackUp sets the loopback interface of the current network namespace
// up; a fresh namespace starts with it down.
func LoopbackUp() error { return kernel.LoopbackUp() }
