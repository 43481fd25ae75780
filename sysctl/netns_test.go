package sysctl_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/closeload/closeload/internal/nstest"
	"github.com/closeload/closeload/sysctl"
	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary act as a helper process instead of
// running tests: the parent test starts it, in or out of a namespace.
const helperEnv = "CLOSELOAD_SYSCTL_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode))
	}
	os.Exit(m.Run())
}

// variant is what every isolation test applies inside its namespace.
var variant = []sysctl.Assignment{
	{Key: "net.ipv4.tcp_tw_reuse", Value: "0"},
	{Key: "net.ipv4.tcp_fin_timeout", Value: "17"},
	{Key: "net.core.somaxconn", Value: "777"},
}

// childReport is what an isolated helper prints as one JSON line.
type childReport struct {
	Isolated bool              `json:"isolated"`
	Mode     string            `json:"mode"`
	Before   map[string]string `json:"before"`
	After    map[string]string `json:"after"`
	Dialed   bool              `json:"dialed"`
	Uid      int               `json:"uid"`
	// GlobalVisible is true when tcp_mem could be read directly inside.
	GlobalVisible bool `json:"global_visible"`
}

func helper(mode string) int {
	switch mode {
	case "isolated": // inside IsolatedCommand: prepare, apply, dial, report
		var r childReport
		r.Isolated, r.Mode = sysctl.InIsolatedChild()
		if !r.Isolated {
			fmt.Fprintln(os.Stderr, "not in a namespace of its own: refusing to apply sysctls")
			return 9
		}
		if err := sysctl.PrepareIsolatedChild(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 3
		}
		r.Before = sysctl.Snapshot("")
		if err := sysctl.Apply("", variant); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 4
		}
		r.After = sysctl.Snapshot("")
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err == nil {
				r.Dialed = true
				c.Close()
			}
			ln.Close()
		}
		r.Uid = os.Getuid()
		_, err = sysctl.Read("", "net.ipv4.tcp_mem")
		r.GlobalVisible = err == nil
		json.NewEncoder(os.Stdout).Encode(r)
		return 0
	case "launch": // as an unprivileged uid: start an isolated child
		os.Setenv(helperEnv, "isolated")
		cmd := sysctl.IsolatedCommand(context.Background(), nil)
		if err := cmd.Run(); err != nil {
			if cmd.ProcessState == nil {
				fmt.Fprintf(os.Stderr, "START-FAILED: %v\n", sysctl.ExplainStart(err))
				return 5
			}
			fmt.Fprintln(os.Stderr, err)
			return 6
		}
		return 0
	case "host-hold": // host mode: apply, say ready, wait for a signal
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		j, err := sysctl.ApplyHost("", os.Getenv("JOURNAL"), variant)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 7
		}
		defer j.Restore()
		j.RestoreOnSignal()
		fmt.Println("ready")
		<-ctx.Done()
		if err := j.Restore(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 8
		}
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown helper mode %q\n", mode)
	return 2
}

func parseReport(t *testing.T, out []byte) childReport {
	t.Helper()
	var r childReport
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("child report %q: %v", out, err)
	}
	return r
}

func checkVariantInEffect(t *testing.T, r childReport) {
	t.Helper()
	for _, a := range variant {
		if r.After[a.Key] != a.Value {
			t.Errorf("inside: %s = %q, want %q", a.Key, r.After[a.Key], a.Value)
		}
	}
	if !r.Dialed {
		t.Error("inside: could not connect over loopback")
	}
	if r.GlobalVisible {
		t.Error("inside: global key net.ipv4.tcp_mem readable in a fresh namespace")
	}
	// Global keys are in effect inside with the host's values; the
	// snapshot carries them from the parent.
	host := sysctl.Snapshot("")
	for _, k := range []string{"net.ipv4.tcp_mem", "net.ipv4.tcp_max_orphans"} {
		if r.Before[k] == "" || r.Before[k] != host[k] {
			t.Errorf("inside: snapshot has %s = %q, want the host's %q", k, r.Before[k], host[k])
		}
	}
}

// TestIsolatedCommand runs a variant through IsolatedCommand and checks
// that its values are in effect inside while the host's /proc/sys stays
// exactly as it was.
func TestIsolatedCommand(t *testing.T) {
	if nstest.Inside() || os.Getenv(sysctl.IsolatedEnv) != "" {
		t.Skip("already inside a namespace")
	}
	host := sysctl.Snapshot("")
	t.Setenv(helperEnv, "isolated")
	cmd := sysctl.IsolatedCommand(context.Background(), nil)
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		if cmd.ProcessState == nil {
			nstest.Unavailable(t, sysctl.ExplainStart(err).Error())
			return
		}
		t.Fatalf("isolated child: %v", err)
	}
	r := parseReport(t, []byte(out.String()))
	wantMode := "isolated"
	if os.Geteuid() != 0 {
		wantMode = "isolated-userns"
	}
	if !r.Isolated || r.Mode != wantMode {
		t.Errorf("child says isolated=%v mode=%q, want %q", r.Isolated, r.Mode, wantMode)
	}
	checkVariantInEffect(t, r)
	if after := sysctl.Snapshot(""); !maps.Equal(host, after) {
		t.Errorf("host /proc/sys changed:\nbefore %v\nafter  %v", host, after)
	}
}

// TestIsolatedUnprivileged runs the same variant as uid 65534: the child
// creates a user namespace and a network namespace by itself. It needs root
// to switch uid; it skips, with the reason, where the kernel refuses
// unprivileged user namespaces. With CLOSELOAD_REQUIRE_NETNS=1 it fails
// instead, but only when the kernel's own switches say user namespaces are
// allowed: a refusal then is a real regression, not the environment.
func TestIsolatedUnprivileged(t *testing.T) {
	if nstest.Inside() || os.Getenv(sysctl.IsolatedEnv) != "" {
		t.Skip("already inside a namespace")
	}
	if os.Geteuid() != 0 {
		// Not root: TestIsolatedCommand already ran unprivileged.
		t.Skip("not root, cannot switch to another uid; TestIsolatedCommand covers the unprivileged path as this uid")
	}
	const nobody = 65534
	bin := copyExecutable(t)
	host := sysctl.Snapshot("")
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), helperEnv+"=launch")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}, Pdeathsig: syscall.SIGKILL}
	cmd.Dir = filepath.Dir(bin)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil && strings.Contains(errb.String(), "START-FAILED") {
		reason := strings.TrimSpace(errb.String())
		if os.Getenv(nstest.RequireEnv) == "1" && usernsAllowedByKernel() {
			t.Fatalf("kernel switches allow user namespaces, yet uid %d could not create one: %s", nobody, reason)
		}
		t.Skip(reason)
	}
	if err != nil {
		t.Fatalf("unprivileged launcher: %v\n%s", err, errb.String())
	}
	r := parseReport(t, []byte(out.String()))
	if !r.Isolated || r.Mode != "isolated-userns" {
		t.Errorf("child says isolated=%v mode=%q, want isolated-userns", r.Isolated, r.Mode)
	}
	if r.Uid != 0 {
		t.Errorf("uid inside the user namespace = %d, want 0 (mapped from %d)", r.Uid, nobody)
	}
	checkVariantInEffect(t, r)
	if after := sysctl.Snapshot(""); !maps.Equal(host, after) {
		t.Errorf("host /proc/sys changed:\nbefore %v\nafter  %v", host, after)
	}
}

// usernsAllowedByKernel reads the switches that disable unprivileged user
// namespaces; true when none of them does.
func usernsAllowedByKernel() bool {
	for file, off := range map[string]string{
		"/proc/sys/kernel/unprivileged_userns_clone":             "0",
		"/proc/sys/user/max_user_namespaces":                     "0",
		"/proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1",
	} {
		if b, err := os.ReadFile(file); err == nil && strings.TrimSpace(string(b)) == off {
			return false
		}
	}
	return true
}

// copyExecutable copies the test binary where another uid can run it (the
// build cache directory is private to its owner).
func copyExecutable(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "closeload-sysctl-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst := filepath.Join(dir, "sysctl.test")
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, src); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestRegistryScopes checks the registry's scopes against this kernel from
// inside a fresh namespace: per-namespace keys are present and writable
// there, global keys absent or read-only. Only access is checked; nothing
// is written.
func TestRegistryScopes(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		for _, k := range sysctl.Keys() {
			path := sysctl.File("", k.Name)
			_, statErr := os.Stat(path)
			writable := statErr == nil && unix.Access(path, unix.W_OK) == nil
			switch k.Scope {
			case sysctl.ScopeNetns:
				if !writable {
					t.Errorf("%s: registry says per-namespace, but in a fresh namespace it is absent or read-only (%v)", k.Name, statErr)
				}
			case sysctl.ScopeGlobal:
				if writable {
					t.Errorf("%s: registry says global, but a fresh namespace may write it", k.Name)
				}
			}
		}
	})
}

// TestApplyRollbackKernel makes the kernel refuse the second of two values
// (a port range below ip_unprivileged_port_start) and checks that the first
// is put back: no partial change.
func TestApplyRollbackKernel(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		before := sysctl.Snapshot("")
		err := sysctl.Apply("", []sysctl.Assignment{
			{Key: "net.ipv4.tcp_fin_timeout", Value: "23"},
			{Key: "net.ipv4.ip_local_port_range", Value: "100 200"},
		})
		if !errors.Is(err, sysctl.ErrRefused) || !strings.Contains(err.Error(), "ip_unprivileged_port_start") {
			t.Fatalf("err = %v, want ErrRefused explaining the port range", err)
		}
		if after := sysctl.Snapshot(""); !maps.Equal(before, after) {
			t.Errorf("partial change:\nbefore %v\nafter  %v", before, after)
		}
	})
}

// TestApplyRollbackChanged makes the kernel take a write but store another
// value than the one given ("023" reads back as a different number): Apply
// reports it and puts that key back too, not only the ones before it.
func TestApplyRollbackChanged(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		before := sysctl.Snapshot("")
		err := sysctl.Apply("", []sysctl.Assignment{
			{Key: "net.ipv4.tcp_tw_reuse", Value: "0"},
			{Key: "net.ipv4.tcp_fin_timeout", Value: "023"},
		})
		if !errors.Is(err, sysctl.ErrRefused) || !strings.Contains(err.Error(), "reads back") {
			t.Fatalf("err = %v, want ErrRefused saying the value reads back differently", err)
		}
		if after := sysctl.Snapshot(""); !maps.Equal(before, after) {
			t.Errorf("partial change:\nbefore %v\nafter  %v", before, after)
		}
	})
}

// startHostHold starts a host-mode helper in the test's namespace and waits
// until it has applied the variant.
func startHostHold(t *testing.T, journal string) *exec.Cmd {
	t.Helper()
	self, _ := os.Executable()
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), helperEnv+"=host-hold", "JOURNAL="+journal)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- s
		io.Copy(io.Discard, stdout)
	}()
	select {
	case s := <-line:
		if strings.TrimSpace(s) != "ready" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("host-mode helper said %q", s)
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("host-mode helper did not get ready")
	}
	return cmd
}

func checkApplied(t *testing.T, want bool, before map[string]string) {
	t.Helper()
	now := sysctl.Snapshot("")
	if !want {
		if !maps.Equal(before, now) {
			t.Errorf("not restored:\nbefore %v\nnow    %v", before, now)
		}
		return
	}
	for _, a := range variant {
		if now[a.Key] != a.Value {
			t.Errorf("%s = %q, want %q applied", a.Key, now[a.Key], a.Value)
		}
	}
}

// TestHostModeSIGTERM runs host mode in a namespace the test made (never on
// the real host): SIGTERM restores every value and removes the journal.
func TestHostModeSIGTERM(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("host mode needs root (in the user namespace too: here uid is not 0)")
		}
		journal := filepath.Join(t.TempDir(), "host-sysctl.json")
		before := sysctl.Snapshot("")
		cmd := startHostHold(t, journal)
		checkApplied(t, true, before)
		if _, err := os.Stat(journal); err != nil {
			t.Errorf("no journal while applied: %v", err)
		}
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper after SIGTERM: %v", err)
		}
		checkApplied(t, false, before)
		if _, err := os.Stat(journal); err == nil {
			t.Error("journal left after restore")
		}
	})
}

// TestHostModeKill9 kills a host-mode process outright, so nothing restores
// by itself; RestoreJournal from another process then does.
func TestHostModeKill9(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("host mode needs root")
		}
		journal := filepath.Join(t.TempDir(), "host-sysctl.json")
		before := sysctl.Snapshot("")
		cmd := startHostHold(t, journal)
		// While the run is alive, a restore under it is refused.
		if err := sysctl.RestoreJournal(journal, ""); !errors.Is(err, sysctl.ErrJournalInUse) {
			t.Errorf("restore under a live run: %v, want ErrJournalInUse", err)
		}
		cmd.Process.Kill()
		cmd.Wait()
		checkApplied(t, true, before)
		if err := sysctl.RestoreJournal(journal, ""); err != nil {
			t.Fatal(err)
		}
		checkApplied(t, false, before)
		if _, err := os.Stat(journal); err == nil {
			t.Error("journal left after restore")
		}
	})
}
