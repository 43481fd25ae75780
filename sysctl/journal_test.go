package sysctl

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeProc copies testdata/proc (a snapshot of a 6.18 host's keys, with a
// fake boot id and namespace) into a temporary directory a test may write.
func fakeProc(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir("testdata/proc", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("testdata/proc", p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func mustRead(t *testing.T, root, key string) string {
	t.Helper()
	v, err := Read(root, key)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSnapshotFixture(t *testing.T) {
	s := Snapshot("testdata/proc")
	if len(s) != len(registry) {
		t.Errorf("snapshot has %d keys, registry %d", len(s), len(registry))
	}
	for k, want := range map[string]string{
		"net.ipv4.tcp_tw_reuse":        "2",
		"net.ipv4.ip_local_port_range": "32768 60999",
		"net.ipv4.tcp_mem":             "287898 383867 575796",
	} {
		if s[k] != want {
			t.Errorf("%s = %q, want %q", k, s[k], want)
		}
	}
	if _, ok := s["net.ipv4.tcp_congestion_control"]; ok {
		t.Error("snapshot holds a key outside the registry")
	}
	w := SnapshotWith("testdata/proc", []Assignment{{"net.ipv4.tcp_congestion_control", "reno"}})
	if w["net.ipv4.tcp_congestion_control"] != "bbr" {
		t.Errorf("SnapshotWith misses the unknown applied key: %v", w)
	}
	// A namespace without the global keys: they are omitted, not empty.
	root := fakeProc(t)
	os.Remove(File(root, "net.ipv4.tcp_mem"))
	if _, ok := Snapshot(root)["net.ipv4.tcp_mem"]; ok {
		t.Error("absent key present in snapshot")
	}
	if _, err := Read(root, "net.ipv4.tcp_mem"); !errors.Is(err, ErrNotHere) || !strings.Contains(err.Error(), "global") {
		t.Errorf("Read of an absent global key: %v", err)
	}
}

func TestApplyFake(t *testing.T) {
	root := fakeProc(t)
	as := []Assignment{{"net.ipv4.tcp_tw_reuse", "1"}, {"net.ipv4.ip_local_port_range", "1024 65000"}}
	if err := Apply(root, as); err != nil {
		t.Fatal(err)
	}
	if v := mustRead(t, root, "net.ipv4.ip_local_port_range"); v != "1024 65000" {
		t.Errorf("port range = %q", v)
	}
	// A key missing halfway: nothing is written at all.
	before := Snapshot(root)
	err := Apply(root, []Assignment{{"net.ipv4.tcp_fin_timeout", "15"}, {"net.ipv4.tcp_nope", "1"}})
	if !errors.Is(err, ErrNotHere) {
		t.Fatalf("err = %v, want ErrNotHere", err)
	}
	if after := Snapshot(root); !equalMaps(before, after) {
		t.Errorf("partial change: before %v after %v", before, after)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// asRoot makes the test's process look like euid to host mode, with a
// host lock directory of its own.
func asRoot(t *testing.T, euid int) {
	t.Helper()
	old, oldDir := geteuid, hostDir
	geteuid = func() int { return euid }
	hostDir = t.TempDir()
	t.Cleanup(func() { geteuid, hostDir = old, oldDir })
}

func TestApplyHostAndRestoreFake(t *testing.T) {
	asRoot(t, 0)
	root := fakeProc(t)
	journal := filepath.Join(t.TempDir(), "j", "host-sysctl.json")
	before := Snapshot(root)
	as := []Assignment{{"net.ipv4.tcp_tw_reuse", "1"}, {"net.ipv4.tcp_fin_timeout", "15"}}
	j, err := ApplyHost(root, journal, as)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(journal); err != nil {
		t.Fatalf("no journal after ApplyHost: %v", err)
	}
	if v := mustRead(t, root, "net.ipv4.tcp_fin_timeout"); v != "15" {
		t.Fatalf("not applied: %q", v)
	}
	// A second host-mode run while this one holds the host is refused,
	// whatever its journal, and told who holds it.
	other := filepath.Join(t.TempDir(), "other.json")
	if _, err := ApplyHost(root, other, as); !errors.Is(err, ErrHostBusy) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) || !strings.Contains(err.Error(), journal) {
		t.Fatalf("second ApplyHost: %v, want ErrHostBusy naming pid %d and %s", err, os.Getpid(), journal)
	}
	if _, err := os.Stat(other); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("refused run wrote its journal: %v", err)
	}
	if err := j.Restore(); err != nil {
		t.Fatal(err)
	}
	if err := j.Restore(); err != nil {
		t.Fatalf("second Restore: %v", err)
	}
	if after := Snapshot(root); !equalMaps(before, after) {
		t.Errorf("not restored: before %v after %v", before, after)
	}
	if _, err := os.Stat(journal); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("journal left after restore: %v", err)
	}
	if _, err := os.Stat(hostDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("host directory left after a clean run: %v", err)
	}
}

func TestApplyHostNotRoot(t *testing.T) {
	asRoot(t, 1000)
	root := fakeProc(t)
	journal := filepath.Join(t.TempDir(), "j.json")
	_, err := ApplyHost(root, journal, []Assignment{{"net.ipv4.tcp_tw_reuse", "1"}})
	if !errors.Is(err, ErrNotRoot) || !strings.Contains(err.Error(), "isolated") {
		t.Fatalf("err = %v, want ErrNotRoot pointing at isolated mode", err)
	}
	if v := mustRead(t, root, "net.ipv4.tcp_tw_reuse"); v != "2" {
		t.Errorf("changed without root: %q", v)
	}
	if _, err := os.Stat(journal); err == nil {
		t.Error("journal written without root")
	}
}

func TestRestoreChangedSince(t *testing.T) {
	asRoot(t, 0)
	root := fakeProc(t)
	journal := filepath.Join(t.TempDir(), "j.json")
	j, err := ApplyHost(root, journal, []Assignment{{"net.ipv4.tcp_tw_reuse", "1"}, {"net.ipv4.tcp_fin_timeout", "15"}})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(File(root, "net.ipv4.tcp_fin_timeout"), []byte("33\n"), 0o644) // an administrator's change
	err = j.Restore()
	if !errors.Is(err, ErrChangedSince) || !strings.Contains(err.Error(), "net.ipv4.tcp_fin_timeout") {
		t.Fatalf("err = %v, want ErrChangedSince naming tcp_fin_timeout", err)
	}
	if v := mustRead(t, root, "net.ipv4.tcp_fin_timeout"); v != "33" {
		t.Errorf("someone else's value overwritten: %q", v)
	}
	if v := mustRead(t, root, "net.ipv4.tcp_tw_reuse"); v != "2" {
		t.Errorf("tcp_tw_reuse not restored: %q", v)
	}
}

// TestRestoreJournalRefuses checks that a journal which is damaged, from
// another boot or from another namespace restores nothing at all.
func TestRestoreJournalRefuses(t *testing.T) {
	asRoot(t, 0)
	tests := []struct {
		name   string
		mangle func(t *testing.T, root, journal string)
		err    error
	}{
		{"truncated", func(t *testing.T, _, journal string) {
			b, _ := os.ReadFile(journal)
			os.WriteFile(journal, b[:len(b)/2], 0o600)
		}, ErrJournalDamaged},
		{"empty", func(t *testing.T, _, journal string) { os.WriteFile(journal, nil, 0o600) }, ErrJournalDamaged},
		{"edited value", func(t *testing.T, _, journal string) {
			b, _ := os.ReadFile(journal)
			os.WriteFile(journal, []byte(strings.Replace(string(b), `"old": "2"`, `"old": "0"`, 1)), 0o600)
		}, ErrJournalDamaged},
		{"not a journal", func(t *testing.T, _, journal string) { os.WriteFile(journal, []byte(`{"schema":1,"id":"x"}`), 0o600) }, ErrJournalDamaged},
		{"other boot", func(t *testing.T, root, _ string) {
			os.WriteFile(filepath.Join(root, "sys/kernel/random/boot_id"), []byte("99999999-0000-0000-0000-000000000000\n"), 0o644)
		}, ErrJournalBoot},
		{"other namespace", func(t *testing.T, root, _ string) {
			os.WriteFile(filepath.Join(root, "self/ns/net"), []byte("net:[4026532999]\n"), 0o644)
		}, ErrJournalNetns},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeProc(t)
			journal := filepath.Join(t.TempDir(), "j.json")
			j, err := ApplyHost(root, journal, []Assignment{{"net.ipv4.tcp_tw_reuse", "1"}, {"net.ipv4.tcp_fin_timeout", "15"}})
			if err != nil {
				t.Fatal(err)
			}
			// The process that applied is "killed": it never restores.
			j.Abandon()
			tc.mangle(t, root, journal)
			applied := Snapshot(root)
			err = RestoreJournal(journal, root)
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), "nothing was restored") {
				t.Fatalf("err = %v, want %v saying nothing was restored", err, tc.err)
			}
			if now := Snapshot(root); !equalMaps(applied, now) {
				t.Errorf("partial change: %v → %v", applied, now)
			}
			if _, err := os.Stat(journal); err != nil {
				t.Errorf("refused journal was removed: %v", err)
			}
		})
	}
}

func TestRestoreJournalAfterKill(t *testing.T) {
	asRoot(t, 0)
	root := fakeProc(t)
	journal := filepath.Join(t.TempDir(), "j.json")
	before := Snapshot(root)
	j, err := ApplyHost(root, journal, []Assignment{{"net.ipv4.tcp_tw_reuse", "1"}, {"net.ipv4.ip_local_port_range", "1024 65000"}})
	if err != nil {
		t.Fatal(err)
	}
	// While the run holds the host, a restore under it is refused.
	if err := RestoreJournal(journal, root); !errors.Is(err, ErrJournalInUse) || !strings.Contains(err.Error(), "nothing was restored") {
		t.Fatalf("restore under a live run: %v, want ErrJournalInUse", err)
	}
	j.Abandon() // kill -9
	if err := RestoreJournal(journal, root); err != nil {
		t.Fatal(err)
	}
	if after := Snapshot(root); !equalMaps(before, after) {
		t.Errorf("not restored: %v → %v", before, after)
	}
	if _, err := os.Stat(journal); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("journal left: %v", err)
	}
}

// FuzzLoadJournal checks that no input makes LoadJournal panic, and that
// only a journal with a matching checksum is accepted.
func FuzzLoadJournal(f *testing.F) {
	dir := f.TempDir()
	old, oldDir := geteuid, hostDir
	geteuid, hostDir = func() int { return 0 }, dir
	defer func() { geteuid, hostDir = old, oldDir }()
	root := filepath.Join(dir, "proc")
	os.MkdirAll(filepath.Join(root, "sys/net/ipv4"), 0o755)
	os.MkdirAll(filepath.Join(root, "sys/kernel/random"), 0o755)
	os.WriteFile(filepath.Join(root, "sys/net/ipv4/tcp_tw_reuse"), []byte("2\n"), 0o644)
	os.WriteFile(filepath.Join(root, "sys/kernel/random/boot_id"), []byte("b\n"), 0o644)
	journal := filepath.Join(dir, "j.json")
	j, err := ApplyHost(root, journal, []Assignment{{"net.ipv4.tcp_tw_reuse", "1"}})
	if err != nil {
		f.Fatal(err)
	}
	j.Abandon()
	good, _ := os.ReadFile(journal)
	f.Add(good)
	f.Add([]byte("{}"))
	f.Add([]byte(`{"version":1,"entries":[{"key":"../x","old":"1","new":"2"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "j.json")
		os.WriteFile(p, data, 0o600)
		j, err := LoadJournal(p)
		if err != nil {
			return
		}
		if sum, _ := j.checksum(); sum != j.Checksum {
			t.Fatal("accepted a journal whose checksum does not match")
		}
		for _, e := range j.Entries {
			if CheckName(e.Key, true) != nil {
				t.Fatalf("accepted key %q", e.Key)
			}
		}
	})
}

// TestHostCrashLeftoverRefused is two host-mode runs with different
// journals (as with different records): the first is killed with its
// changes in force; the second is refused, naming the first's pid and
// journal, and changes nothing until that journal is restored.
func TestHostCrashLeftoverRefused(t *testing.T) {
	asRoot(t, 0)
	root := fakeProc(t)
	before := Snapshot(root)
	dir := t.TempDir()
	first, second := filepath.Join(dir, "a.json.sysctl-journal"), filepath.Join(dir, "b.json.sysctl-journal")
	j, err := ApplyHost(root, first, []Assignment{{"net.ipv4.tcp_tw_reuse", "1"}})
	if err != nil {
		t.Fatal(err)
	}
	j.Abandon() // kill -9
	if b, err := os.ReadFile(LockPath()); err != nil || !strings.Contains(string(b), first) {
		t.Fatalf("lock file after a crash: %q, %v; want it to name %s", b, err, first)
	}
	applied := Snapshot(root)
	_, err = ApplyHost(root, second, []Assignment{{"net.ipv4.tcp_fin_timeout", "15"}})
	if !errors.Is(err, ErrJournalExists) || !strings.Contains(err.Error(), first) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second run after a crash: %v, want ErrJournalExists naming %s and the pid", err, first)
	}
	if now := Snapshot(root); !equalMaps(applied, now) {
		t.Errorf("refused run changed the host: %v → %v", applied, now)
	}
	if _, err := os.Stat(second); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("refused run wrote a journal: %v", err)
	}
	if err := RestoreJournal(first, root); err != nil {
		t.Fatal(err)
	}
	if now := Snapshot(root); !equalMaps(before, now) {
		t.Errorf("not restored: %v → %v", before, now)
	}
	j, err = ApplyHost(root, second, []Assignment{{"net.ipv4.tcp_fin_timeout", "15"}})
	if err != nil {
		t.Fatalf("run after the restore: %v", err)
	}
	if err := j.Restore(); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreFailureKeepsJournal makes a restore fail (the key vanishes):
// the journal stays, the run still holds the host, and a later Restore
// that can write succeeds. A run that dies after a failed restore leaves a
// journal the next run is told about.
func TestRestoreFailureKeepsJournal(t *testing.T) {
	asRoot(t, 0)
	root := fakeProc(t)
	journal := filepath.Join(t.TempDir(), "j.json")
	other := filepath.Join(t.TempDir(), "other.json")
	as := []Assignment{{"net.ipv4.tcp_tw_reuse", "1"}, {"net.ipv4.tcp_fin_timeout", "15"}}
	key := File(root, "net.ipv4.tcp_fin_timeout")
	for _, dies := range []bool{false, true} {
		j, err := ApplyHost(root, journal, as)
		if err != nil {
			t.Fatal(err)
		}
		os.Rename(key, key+".away")
		err = j.Restore()
		if err == nil || errors.Is(err, ErrChangedSince) || !strings.Contains(err.Error(), "journal kept") {
			t.Fatalf("restore with a key gone: %v, want a failure keeping the journal", err)
		}
		if _, err := os.Stat(journal); err != nil {
			t.Fatalf("journal removed after a failed restore: %v", err)
		}
		if dies {
			j.Abandon()
			if _, err := ApplyHost(root, other, as); !errors.Is(err, ErrJournalExists) || !strings.Contains(err.Error(), journal) {
				t.Fatalf("run after a failed restore and a death: %v, want ErrJournalExists naming %s", err, journal)
			}
			os.Rename(key+".away", key)
			if err := RestoreJournal(journal, root); err != nil {
				t.Fatal(err)
			}
		} else {
			if _, err := ApplyHost(root, other, as); !errors.Is(err, ErrHostBusy) {
				t.Fatalf("run while a failed restore's owner lives: %v, want ErrHostBusy", err)
			}
			os.Rename(key+".away", key)
			if err := j.Restore(); err != nil {
				t.Fatalf("second Restore: %v", err)
			}
		}
		if v := mustRead(t, root, "net.ipv4.tcp_fin_timeout"); v != "60" {
			t.Errorf("tcp_fin_timeout = %q after the restore, want 60", v)
		}
		if _, err := os.Stat(journal); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("journal left after a successful restore: %v", err)
		}
	}
}

// TestHostRestoresOnSignal sends SIGHUP and SIGQUIT to this process while
// host mode holds a fake host: the journal's own handler restores the
// values at once (the process does not exit; the caller's handler would
// end the run). Without the handler the signal would kill the test.
func TestHostRestoresOnSignal(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGQUIT} {
		t.Run(sig.String(), func(t *testing.T) {
			asRoot(t, 0)
			root := fakeProc(t)
			before := Snapshot(root)
			journal := filepath.Join(t.TempDir(), "j.json")
			j, err := ApplyHost(root, journal, []Assignment{{"net.ipv4.tcp_tw_reuse", "1"}})
			if err != nil {
				t.Fatal(err)
			}
			defer j.Restore()
			if err := syscall.Kill(os.Getpid(), sig); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(20 * time.Second)
			for !equalMaps(before, Snapshot(root)) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if now := Snapshot(root); !equalMaps(before, now) {
				t.Fatalf("%v did not restore: %v → %v", sig, before, now)
			}
			for time.Now().Before(deadline) {
				if _, err := os.Stat(journal); errors.Is(err, fs.ErrNotExist) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if _, err := os.Stat(journal); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("journal left after the signal's restore: %v", err)
			}
		})
	}
}

func TestRestoreSignals(t *testing.T) {
	want := map[os.Signal]bool{syscall.SIGINT: true, syscall.SIGTERM: true, syscall.SIGHUP: true, syscall.SIGQUIT: true}
	got := RestoreSignals()
	for _, s := range got {
		delete(want, s)
	}
	if len(want) != 0 || len(got) != 4 {
		t.Errorf("RestoreSignals() = %v, missing %v", got, want)
	}
}

// FuzzParseHostHolder checks that no lock file content makes the parser
// panic or name a negative pid.
func FuzzParseHostHolder(f *testing.F) {
	f.Add([]byte(`{"pid":42,"journal":"/run/closeload/host-sysctl.json","since":"2026-12-02T06:00:00Z"}`))
	f.Add([]byte(""))
	f.Add([]byte(`{"pid":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		h := parseHostHolder(bytes.NewReader(b))
		if h.PID < 0 {
			t.Fatalf("negative pid from %q", b)
		}
		_ = h.String()
	})
}

func TestParseHostHolder(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{`{"pid":42,"journal":"/run/closeload/host-sysctl.json"}`, "pid 42, journal /run/closeload/host-sysctl.json"},
		{``, "pid unknown"},
		{`{"pid":`, "pid unknown"},
		{`{"pid":-3,"journal":"x"}`, "pid unknown"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := parseHostHolder(strings.NewReader(tc.in)).String(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestPendingJournal follows a journal from a live run through its death
// to its restore: PendingJournal names it (and its pid) until it is gone.
func TestPendingJournal(t *testing.T) {
	asRoot(t, 0)
	root := fakeProc(t)
	if p, pid := PendingJournal(); p != "" || pid != 0 {
		t.Fatalf("fresh host: PendingJournal() = %q, %d", p, pid)
	}
	journal := filepath.Join(t.TempDir(), "r.json.sysctl-journal")
	j, err := ApplyHost(root, journal, []Assignment{{"net.ipv4.tcp_tw_reuse", "1"}})
	if err != nil {
		t.Fatal(err)
	}
	if p, pid := PendingJournal(); p != journal || pid != os.Getpid() {
		t.Errorf("live run: PendingJournal() = %q, %d, want %q, %d", p, pid, journal, os.Getpid())
	}
	j.Abandon()
	if p, _ := PendingJournal(); p != journal {
		t.Errorf("dead run: PendingJournal() = %q, want %q", p, journal)
	}
	if err := RestoreJournal(journal, root); err != nil {
		t.Fatal(err)
	}
	if p, pid := PendingJournal(); p != "" || pid != 0 {
		t.Errorf("after restore: PendingJournal() = %q, %d", p, pid)
	}
}
