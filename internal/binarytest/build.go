// Package binarytest builds and runs the closeload binary for tests that
// need a process of their own: end-to-end runs, signals, re-execution into
// namespaces, other uids, other "hosts". One package, so every such test
// builds it the same way: statically (as the container image does) into a
// directory every uid can read (unprivileged-isolation tests run it as uid
// 65534); and starts and stops `closeload serve` the same way.
package binarytest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Closeload builds ./cmd/closeload and returns the binary's path; the
// directory is removed when the test ends.
func Closeload(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "closeload-bin")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	bin := filepath.Join(dir, "closeload")
	_, self, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/closeload")
	cmd.Dir = filepath.Join(filepath.Dir(self), "..", "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
