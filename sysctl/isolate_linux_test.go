package sysctl

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/closeload/closeload/kernel"
)

// TestInIsolatedChildChecksNamespace checks that the environment mark alone
// never makes a process count as isolated: callers apply sysctls when it
// does, so a stray mark must not let them reach the host.
func TestInIsolatedChildChecksNamespace(t *testing.T) {
	own, err := kernel.NetnsInode()
	if err != nil {
		t.Skipf("cannot read this process's network namespace: %v", err)
	}
	tests := []struct {
		name, mode, from string
		want             bool
	}{
		{"no mark", "", "", false},
		{"mark without parent namespace", "1", "", false},
		{"mark with garbage parent", "1", "x", false},
		{"parent is this namespace", "1", strconv.FormatUint(own, 10), false},
		{"parent is this namespace, userns", "userns", strconv.FormatUint(own, 10), false},
		{"parent elsewhere", "userns", strconv.FormatUint(own+1, 10), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(IsolatedEnv, tc.mode)
			t.Setenv(isolatedFromEnv, tc.from)
			if got, mode := InIsolatedChild(); got != tc.want {
				t.Errorf("InIsolatedChild() = %v, %q; want %v", got, mode, tc.want)
			}
		})
	}
}

// TestJournalWriteExclusive checks that a journal never replaces another
// one, even when it appears after ApplyHost's first look.
func TestJournalWriteExclusive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "host-sysctl.json")
	if err := os.WriteFile(path, []byte("other run\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	j := &Journal{Version: JournalVersion, BootID: "b", path: path,
		Entries: []JournalEntry{{Key: "net.ipv4.tcp_tw_reuse", Old: "2", New: "1"}}}
	if err := j.write(); !errors.Is(err, ErrJournalExists) {
		t.Fatalf("write over an existing journal: %v, want ErrJournalExists", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "other run\n" {
		t.Errorf("existing journal replaced: %q", b)
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*")); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}
}
