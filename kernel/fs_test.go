package kernel

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParsePortRange(t *testing.T) {
	for _, tc := range []struct {
		in     string
		lo, hi int
		ok     bool
	}{
		{"32768\t60999\n", 32768, 60999, true},
		{"1024 65535", 1024, 65535, true},
		{"60999 32768", 0, 0, false},
		{"1 2 3", 0, 0, false},
		{"a b", 0, 0, false},
		{"0 10", 0, 0, false},
	} {
		lo, hi, ok := ParsePortRange(tc.in)
		if ok != tc.ok || (ok && (lo != tc.lo || hi != tc.hi)) {
			t.Errorf("ParsePortRange(%q) = %d %d %v", tc.in, lo, hi, ok)
		}
	}
}

func TestParseMemAvailable(t *testing.T) {
	f, err := os.Open("testdata/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := ParseMemAvailable(f)
	if err != nil || got != 23617036<<10 {
		t.Fatalf("MemAvailable = %d, %v", got, err)
	}
	if _, err := ParseMemAvailable(strings.NewReader("MemTotal: 1 kB\n")); !errors.Is(err, ErrFormat) {
		t.Errorf("no MemAvailable: %v", err)
	}
	if _, err := ParseMemAvailable(strings.NewReader("MemAvailable: lots kB\n")); !errors.Is(err, ErrFormat) {
		t.Errorf("bad MemAvailable: %v", err)
	}
}

func FuzzParseMemAvailable(f *testing.F) {
	f.Add("MemAvailable:   23617036 kB\n")
	f.Add("MemAvailable: -1 kB\n")
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseMemAvailable(strings.NewReader(s))
		if err == nil && v < 0 {
			t.Fatalf("negative memory %d from %q", v, s)
		}
	})
}

func FuzzParsePortRange(f *testing.F) {
	f.Add("32768 60999")
	f.Fuzz(func(t *testing.T, s string) {
		lo, hi, ok := ParsePortRange(s)
		if ok && (lo < 1 || hi > 65535 || lo > hi) {
			t.Fatalf("ParsePortRange(%q) = %d %d", s, lo, hi)
		}
	})
}

// TestFixtureTree reads a fixture tree as the kernel's.
func TestFixtureTree(t *testing.T) {
	root := t.TempDir()
	mk := func(rel, content string) {
		p := filepath.Join(root, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(content), 0o644)
	}
	mk("sys/net/ipv4/ip_local_port_range", "1024\t65000\n")
	mk("sys/net/ipv4/tcp_fin_timeout", "60\n")
	mk("sys/kernel/random/boot_id", "abc\n")
	fs := NewFS(root)
	if lo, hi, err := fs.PortRange(); err != nil || lo != 1024 || hi != 65000 {
		t.Errorf("PortRange = %d %d %v", lo, hi, err)
	}
	if err := fs.WriteSysctl("net.ipv4.tcp_fin_timeout", "7"); err != nil {
		t.Fatal(err)
	}
	if v, err := fs.Sysctl("net.ipv4.tcp_fin_timeout"); err != nil || v != "7" {
		t.Errorf("Sysctl = %q %v", v, err)
	}
	if _, err := fs.Sysctl("net.ipv4.nope"); !errors.Is(err, ErrNotExist) {
		t.Errorf("missing key: %v", err)
	}
	if fs.BootID() != "abc" {
		t.Errorf("BootID %q", fs.BootID())
	}
	if p := fs.SysctlPath("net.ipv4.../../x"); !strings.HasPrefix(p, filepath.Join(root, "sys")) {
		t.Errorf("SysctlPath left the tree: %s", p)
	}
}

func TestOrphaned(t *testing.T) {
	for st := uint8(1); st <= StateClosing; st++ {
		want := st == StateFinWait1 || st == StateFinWait2 || st == StateClosing || st == StateLastAck || st == StateClose
		if Orphaned(st, false) != want || Orphaned(st, true) {
			t.Errorf("state %d: Orphaned %v", st, Orphaned(st, false))
		}
	}
}
