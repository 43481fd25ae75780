package sysctl_test

import (
	"bufio"
	"bytes"
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

// hostDirEnv carries the host lock directory of a test to the processes
// it starts (helpers, namespace children), so they contend for one lock
// and never for the real /run/closeload.
const hostDirEnv = "CLOSELOAD_SYSCTL_TEST_HOSTDIR"

func TestMain(m *testing.M) {
	dir, made := os.Getenv(hostDirEnv), false
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "closeload-hostdir"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		os.Setenv(hostDirEnv, dir)
		made = true
	}
	sysctl.SetHostDir(dir)
	code := 0
	if mode := os.Getenv(helperEnv); mode != "" {
		code = helper(mode)
	} else {
		code = m.Run()
	}
	if made {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// ownHostDir gives a test, and every process it starts, a host lock
// directory of its own.
func ownHostDir(t *testing.T) string {
	t.Helper()
	old := os.Getenv(hostDirEnv)
	dir := t.TempDir()
	t.Setenv(hostDirEnv, dir)
	sysctl.SetHostDir(dir)
	t.Cleanup(func() { sysctl.SetHostDir(old) })
	return dir
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
	case "host-hold", "host-hold-int-term":
		// host mode: apply, say ready, wait for a signal. host-hold stops
		// on every signal of RestoreSignals, as a run should;
		// host-hold-int-term only on SIGINT and SIGTERM, so that another
		// signal is left to the journal's own handler.
		sigs := sysctl.RestoreSignals()
		if mode == "host-hold-int-term" {
			sigs = []os.Signal{syscall.SIGINT, syscall.SIGTERM}
		}
		ctx, stop := signal.NotifyContext(context.Background(), sigs...)
		defer stop()
		j, err := sysctl.ApplyHost("", os.Getenv("JOURNAL"), variant)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 7
		}
		defer j.Restore()
		fmt.Println("ready")
		<-ctx.Done()
		// A run prints its summary before it restores; when its
		// standard output is a closed pipe, this write must fail, not
		// kill the process.
		_, werr := fmt.Println("stopping")
		fmt.Fprintln(os.Stderr, "stdout write:", werr)
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

// hostProc is a host-mode helper process in the test's namespace.
type hostProc struct {
	cmd    *exec.Cmd
	line   chan string // its first line of output: "ready", or "" when it ended first
	stdout io.ReadCloser
	stderr bytes.Buffer
}

// startHost starts a host-mode helper (mode host-hold or
// host-hold-int-term) journaling in journal, without waiting for it.
func startHost(t *testing.T, mode, journal string) *hostProc {
	t.Helper()
	self, _ := os.Executable()
	p := &hostProc{cmd: exec.Command(self), line: make(chan string, 1)}
	p.cmd.Env = append(os.Environ(), helperEnv+"="+mode, "JOURNAL="+journal)
	p.cmd.Stderr = &p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.stdout = stdout
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		p.line <- strings.TrimSpace(s)
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	return p
}

// ready waits until the helper has applied the variant (true) or ended
// without applying it (false; its stderr says why).
func (p *hostProc) ready(t *testing.T) bool {
	t.Helper()
	select {
	case s := <-p.line:
		if s == "ready" {
			return true
		}
		p.cmd.Wait()
		return false
	case <-time.After(20 * time.Second):
		t.Fatal("host-mode helper neither got ready nor ended")
		return false
	}
}

// startHostHold starts a host-mode helper and waits until it has applied
// the variant.
func startHostHold(t *testing.T, journal string) *exec.Cmd {
	t.Helper()
	p := startHost(t, "host-hold", journal)
	if !p.ready(t) {
		t.Fatalf("host-mode helper did not apply: %v\n%s", p.cmd.ProcessState, p.stderr.String())
	}
	return p.cmd
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

// TestHostModeSignals runs host mode in a namespace the test made (never
// on the real host): each signal a run stops on restores every value and
// removes the journal.
func TestHostModeSignals(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("host mode needs root (in the user namespace too: here uid is not 0)")
		}
		for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT} {
			t.Run(sig.String(), func(t *testing.T) {
				ownHostDir(t)
				journal := filepath.Join(t.TempDir(), "host-sysctl.json")
				before := sysctl.Snapshot("")
				cmd := startHostHold(t, journal)
				checkApplied(t, true, before)
				if _, err := os.Stat(journal); err != nil {
					t.Errorf("no journal while applied: %v", err)
				}
				cmd.Process.Signal(sig)
				if err := cmd.Wait(); err != nil {
					t.Fatalf("helper after %v: %v", sig, err)
				}
				checkApplied(t, false, before)
				if _, err := os.Stat(journal); err == nil {
					t.Error("journal left after restore")
				}
			})
		}
	})
}

// TestHostModeSIGHUPUnhandled sends SIGHUP to a host-mode process that
// itself stops only on SIGINT and SIGTERM: the journal's handler restores
// the values while the process lives on.
func TestHostModeSIGHUPUnhandled(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("host mode needs root")
		}
		ownHostDir(t)
		journal := filepath.Join(t.TempDir(), "host-sysctl.json")
		before := sysctl.Snapshot("")
		p := startHost(t, "host-hold-int-term", journal)
		if !p.ready(t) {
			t.Fatalf("helper did not apply: %s", p.stderr.String())
		}
		checkApplied(t, true, before)
		p.cmd.Process.Signal(syscall.SIGHUP)
		deadline := time.Now().Add(20 * time.Second)
		for !maps.Equal(before, sysctl.Snapshot("")) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		checkApplied(t, false, before)
		// Still alive: it ends on SIGTERM with its own exit status, not
		// killed by the SIGHUP.
		p.cmd.Process.Signal(syscall.SIGTERM)
		if err := p.cmd.Wait(); err != nil {
			t.Fatalf("helper after SIGTERM: %v\n%s", err, p.stderr.String())
		}
		if _, err := os.Stat(journal); err == nil {
			t.Error("journal left after restore")
		}
	})
}

// TestHostModeBrokenStdout closes the reading end of a host-mode
// process's standard output (as "closeload ... | head -1" does) and stops
// it: its next write fails with EPIPE instead of SIGPIPE killing it before
// it restores, and the values come back.
func TestHostModeBrokenStdout(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("host mode needs root")
		}
		ownHostDir(t)
		journal := filepath.Join(t.TempDir(), "host-sysctl.json")
		before := sysctl.Snapshot("")
		p := startHost(t, "host-hold", journal)
		if !p.ready(t) {
			t.Fatalf("helper did not apply: %s", p.stderr.String())
		}
		p.stdout.Close()
		p.cmd.Process.Signal(syscall.SIGTERM)
		err := p.cmd.Wait()
		if err != nil {
			t.Errorf("helper with a closed stdout: %v\n%s", err, p.stderr.String())
		}
		if !strings.Contains(p.stderr.String(), "broken pipe") {
			t.Errorf("the write to a closed stdout did not fail with EPIPE: %s", p.stderr.String())
		}
		checkApplied(t, false, before)
		if _, err := os.Stat(journal); err == nil {
			t.Error("journal left after restore")
		}
	})
}

// TestHostModeConcurrent starts two host-mode processes at once with
// different journals (as two runs with different records would have): only
// one changes the namespace's values; the other is refused, names the
// first's pid, and writes no journal. After the first ends, the values are
// the original ones.
func TestHostModeConcurrent(t *testing.T) {
	nstest.Run(t, func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("host mode needs root")
		}
		hostDir := ownHostDir(t)
		dir := t.TempDir()
		before := sysctl.Snapshot("")
		a := startHost(t, "host-hold", filepath.Join(dir, "a.json.sysctl-journal"))
		b := startHost(t, "host-hold", filepath.Join(dir, "b.json.sysctl-journal"))
		readyA, readyB := a.ready(t), b.ready(t)
		if readyA == readyB {
			t.Fatalf("both or neither applied (a %v, b %v):\n%s\n%s", readyA, readyB, a.stderr.String(), b.stderr.String())
		}
		winner, loser, loserJournal := a, b, "b.json.sysctl-journal"
		if readyB {
			winner, loser, loserJournal = b, a, "a.json.sysctl-journal"
		}
		msg := loser.stderr.String()
		if !strings.Contains(msg, sysctl.ErrHostBusy.Error()) || !strings.Contains(msg, fmt.Sprintf("pid %d", winner.cmd.Process.Pid)) {
			t.Errorf("refused run says %q, want ErrHostBusy naming pid %d", msg, winner.cmd.Process.Pid)
		}
		if _, err := os.Stat(filepath.Join(dir, loserJournal)); err == nil {
			t.Error("refused run wrote a journal")
		}
		checkApplied(t, true, before)
		winner.cmd.Process.Signal(syscall.SIGTERM)
		if err := winner.cmd.Wait(); err != nil {
			t.Fatalf("winner after SIGTERM: %v\n%s", err, winner.stderr.String())
		}
		checkApplied(t, false, before)
		if names, _ := os.ReadDir(dir); len(names) != 0 {
			t.Errorf("journals left: %v", names)
		}
		if names, _ := os.ReadDir(hostDir); len(names) != 0 {
			t.Errorf("host lock directory left with %v", names)
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
		ownHostDir(t)
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
