package sysctl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/closeload/closeload/kernel"
)

// IsolatedEnv is set in the environment of a process re-executed by
// IsolatedCommand: "1" in a fresh network namespace, "userns" when a user
// namespace was created too (the caller was not root).
const IsolatedEnv = "CLOSELOAD_ISOLATED"

// isolatedFromEnv carries the launching process's network namespace inode:
// a child counts as isolated only when its own namespace differs, so a
// stray IsolatedEnv in an environment can never make a run apply sysctls to
// the namespace it was started from (the host's).
const isolatedFromEnv = "CLOSELOAD_ISOLATED_FROM"

// ErrIsolation marks a failure to create the namespaces of an isolated run.
var ErrIsolation = errors.New("cannot create an isolated network namespace")

// ChildStopDelay is how long an isolated child has, after the parent's
// context ends and it is sent SIGTERM, to write its partial record before
// it is killed.
const ChildStopDelay = 30 * time.Second

// IsolatedCommand re-executes the current binary with args in a fresh
// network namespace (and user namespace when not root). stdin, stdout and
// stderr are inherited; the environment gains IsolatedEnv. When ctx ends the
// child gets SIGTERM (so it can write its interrupted record) and is killed
// ChildStopDelay later. Start errors are best passed through ExplainStart.
func IsolatedCommand(ctx context.Context, args []string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	attr, userns := kernel.IsolationAttr()
	cmd.SysProcAttr = attr
	mode := "1"
	if userns {
		mode = "userns"
	}
	env := make([]string, 0, len(os.Environ())+3)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, IsolatedEnv+"=") && !strings.HasPrefix(e, isolatedFromEnv+"=") && !strings.HasPrefix(e, hostGlobalsEnv+"=") {
			env = append(env, e)
		}
	}
	cmd.Env = append(env, IsolatedEnv+"="+mode)
	if ino, err := kernel.NetnsInode(); err == nil {
		cmd.Env = append(cmd.Env, isolatedFromEnv+"="+strconv.FormatUint(ino, 10))
	}
	if g := hostGlobals(); g != "" {
		cmd.Env = append(cmd.Env, hostGlobalsEnv+"="+g)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = ChildStopDelay
	return cmd
}

// InIsolatedChild reports whether this process was started by
// IsolatedCommand (or descends from such a child in the same namespace), and
// the namespace mode for the record's provenance: "isolated" or
// "isolated-userns". It checks the kernel, not only the environment: the
// answer is false unless this process's network namespace differs from the
// one IsolatedCommand was called in, since callers then change sysctls.
func InIsolatedChild() (bool, string) {
	mode := os.Getenv(IsolatedEnv)
	if mode == "" {
		return false, ""
	}
	from, err := strconv.ParseUint(os.Getenv(isolatedFromEnv), 10, 64)
	if err != nil {
		return false, ""
	}
	if own, err := kernel.NetnsInode(); err != nil || own == from {
		return false, ""
	}
	if mode == "userns" {
		return true, "isolated-userns"
	}
	return true, "isolated"
}

// PrepareIsolatedChild readies a fresh namespace for a run: loopback up
// (a new namespace starts with it down).
func PrepareIsolatedChild() error {
	if err := kernel.LoopbackUp(); err != nil {
		return fmt.Errorf("isolated child: bring loopback up: %w", err)
	}
	return nil
}

// ExplainStart turns a failure to start an isolated child into an error
// that says why the kernel refused and what to do; other errors pass
// through unchanged.
func ExplainStart(err error) error {
	if err == nil {
		return nil
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err
	}
	switch errno {
	case syscall.EPERM, syscall.EACCES, syscall.ENOSPC, syscall.EINVAL, syscall.EUSERS:
	default:
		return err
	}
	return fmt.Errorf("%w: %v (%s)", ErrIsolation, err, UsernsHint(DefaultProcRoot))
}

// UsernsHint says what on this machine may stop a namespace from being
// created: not being root while unprivileged user namespaces are disabled.
func UsernsHint(procRoot string) string {
	if os.Geteuid() == 0 {
		return "creating a network namespace needs CAP_SYS_ADMIN; in a container, run it privileged or with --host-sysctl"
	}
	var why []string
	if v, err := os.ReadFile(procRoot + "/sys/kernel/unprivileged_userns_clone"); err == nil && strings.TrimSpace(string(v)) == "0" {
		why = append(why, "kernel.unprivileged_userns_clone=0")
	}
	if v, err := os.ReadFile(procRoot + "/sys/user/max_user_namespaces"); err == nil && strings.TrimSpace(string(v)) == "0" {
		why = append(why, "user.max_user_namespaces=0")
	}
	if v, err := os.ReadFile(procRoot + "/sys/kernel/apparmor_restrict_unprivileged_userns"); err == nil && strings.TrimSpace(string(v)) == "1" {
		why = append(why, "kernel.apparmor_restrict_unprivileged_userns=1")
	}
	if len(why) == 0 {
		return "unprivileged user namespaces appear to be refused on this machine; run as root, or ask the administrator to allow them"
	}
	return "unprivileged user namespaces are disabled here (" + strings.Join(why, ", ") + "); run as root, or ask the administrator to allow them"
}
