package sysctl

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
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

func asRoot(t *testing.T, euid int) {
	t.Helper()
	old := geteuid
	geteuid = func() int { return euid }
	t.Cleanup(func() { geteuid = old })
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
	// A second host-mode run while the journal exists is refused.
	if _, err := ApplyHost(root, journal, as); !errors.Is(err, ErrJournalExists) || !strings.Contains(err.Error(), "closeload sysctl restore") {
		t.Fatalf("second ApplyHost: %v", err)
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
			if _, err := ApplyHost(root, journal, []Assignment{{"net.ipv4.tcp_tw_reuse", "1"}, {"net.ipv4.tcp_fin_timeout", "15"}}); err != nil {
				t.Fatal(err)
			}
			// The process that applied is "killed": it never restores.
			tc.mangle(t, root, journal)
			applied := Snapshot(root)
			err := RestoreJournal(journal, root)
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
	if _, err := ApplyHost(root, journal, []Assignment{{"net.ipv4.tcp_tw_reuse", "1"}, {"net.ipv4.ip_local_port_range", "1024 65000"}}); err != nil {
		t.Fatal(err)
	}
	// This process wrote it and is alive, but it is the restorer itself.
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
	asRoot := func() func() { old := geteuid; geteuid = func() int { return 0 }; return func() { geteuid = old } }
	defer asRoot()()
	dir := f.TempDir()
	root := filepath.Join(dir, "proc")
	os.MkdirAll(filepath.Join(root, "sys/net/ipv4"), 0o755)
	os.MkdirAll(filepath.Join(root, "sys/kernel/random"), 0o755)
	os.WriteFile(filepath.Join(root, "sys/net/ipv4/tcp_tw_reuse"), []byte("2\n"), 0o644)
	os.WriteFile(filepath.Join(root, "sys/kernel/random/boot_id"), []byte("b\n"), 0o644)
	journal := filepath.Join(dir, "j.json")
	if _, err := ApplyHost(root, journal, []Assignment{{"net.ipv4.tcp_tw_reuse", "1"}}); err != nil {
		f.Fatal(err)
	}
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
