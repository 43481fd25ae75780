package verify

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// The test binary doubles as the verify child and as its helpers, the way
// the closeload binary does with "verify --child" and "verify --helper".
const (
	testChildEnv      = "CLOSELOAD_VERIFY_TEST_CHILD"
	testHelperEnv     = "CLOSELOAD_VERIFY_TEST_HELPER"
	testHelperArgsEnv = "CLOSELOAD_VERIFY_TEST_HELPER_ARGS"
)

func TestMain(m *testing.M) {
	if name := os.Getenv(testHelperEnv); name != "" {
		var args []string
		if a := os.Getenv(testHelperArgsEnv); a != "" {
			args = strings.Split(a, "\x1f")
		}
		if err := RunHelper(context.Background(), name, args, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if claim := os.Getenv(testChildEnv); claim != "" {
		if err := RunChild(context.Background(), claim, os.Stdout, testHelper); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testHelper starts a helper as this test binary, in the caller's namespace.
func testHelper(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), testHelperEnv+"="+name, testHelperArgsEnv+"="+strings.Join(args, "\x1f"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// testLauncher runs one claim as a child of this test binary in a fresh
// network namespace.
func testLauncher(ctx context.Context, claim string) *exec.Cmd {
	cmd := IsolatedCommand(ctx)
	cmd.Env = append(cmd.Env, testChildEnv+"="+claim)
	return cmd
}
