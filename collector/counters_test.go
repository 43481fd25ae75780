package collector

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadCounters(t *testing.T) {
	for _, tc := range []struct {
		root string
		v6   bool
	}{{"testdata/proc-ipv6", true}, {"testdata/proc-noipv6", false}} {
		t.Run(filepath.Base(tc.root), func(t *testing.T) {
			m, err := ReadCounters(tc.root)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]int64{
				"TcpExt.SyncookiesSent": 0, "TcpExt.TW": 10, "TcpExt.ListenOverflows": 22,
				"TcpExt.TCPAbortOnClose": 55,
				"Tcp.ActiveOpens":        1200, "Tcp.OutRsts": 17, "Tcp.EstabResets": 4, "Tcp.MaxConn": -1,
				"Sockstat.sockets.used": 130, "Sockstat.TCP.tw": 3, "Sockstat.TCP.orphan": 2,
				"Sockstat.TCP.alloc": 7, "Sockstat.TCP.mem": 1, "Sockstat.FRAG.memory": 0,
			}
			if tc.v6 {
				want["Sockstat6.TCP6.inuse"] = 4
				want["Sockstat6.FRAG6.memory"] = 0
			}
			for k, v := range want {
				if got, ok := m[k]; !ok || got != v {
					t.Errorf("%s = %d (present %v), want %d", k, got, ok, v)
				}
			}
			for k := range m {
				switch {
				case len(k) > 7 && k[:7] == "TcpExt.", len(k) > 4 && k[:4] == "Tcp.",
					len(k) > 9 && k[:9] == "Sockstat.", tc.v6 && len(k) > 10 && k[:10] == "Sockstat6.":
				default:
					t.Errorf("unexpected key %q (only TcpExt, Tcp, Sockstat kept)", k)
				}
			}
		})
	}
}

func TestReadCountersMissing(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "net"), 0o755)
	b := readFixture(t, "testdata/proc-ipv6/net/sockstat")
	os.WriteFile(filepath.Join(root, "net", "sockstat"), b, 0o644)
	m, err := ReadCounters(root)
	if !errors.Is(err, ErrCounters) {
		t.Fatalf("missing netstat and snmp: err %v", err)
	}
	if m["Sockstat.TCP.tw"] != 3 {
		t.Fatalf("what could be read must still be returned: %v", m)
	}
}

func TestParseSNMPMalformed(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		bad  int
		want map[string]int64
	}{
		{"ok", "Tcp: A B\nTcp: 1 -2\n", 0, map[string]int64{"Tcp.A": 1, "Tcp.B": -2}},
		{"fewer values", "Tcp: A B\nTcp: 1\n", 1, map[string]int64{"Tcp.A": 1}},
		{"more values", "Tcp: A\nTcp: 1 2\n", 1, map[string]int64{"Tcp.A": 1}},
		{"not a number", "Tcp: A B\nTcp: x 2\n", 1, map[string]int64{"Tcp.B": 2}},
		{"header without values", "Tcp: A\nIp: B\nIp: 3\n", 1, map[string]int64{}},
		{"dangling header", "Tcp: A\n", 1, map[string]int64{}},
		{"no colon", "Tcp A\nTcp 1\n", 2, map[string]int64{}},
		{"big unsigned", "Tcp: A\nTcp: 18446744073709551615\n", 0, map[string]int64{"Tcp.A": -1}},
		{"overflow", "Tcp: A\nTcp: 99999999999999999999\n", 1, map[string]int64{}},
		{"other section", "Ip: A\nIp: 1\n", 0, map[string]int64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := map[string]int64{}
			if bad := ParseSNMP([]byte(tc.in), "Tcp", m); bad != tc.bad {
				t.Errorf("bad = %d, want %d", bad, tc.bad)
			}
			if len(m) != len(tc.want) {
				t.Errorf("got %v, want %v", m, tc.want)
			}
			for k, v := range tc.want {
				if m[k] != v {
					t.Errorf("%s = %d, want %d", k, m[k], v)
				}
			}
		})
	}
}

func TestParseSockstatMalformed(t *testing.T) {
	m := map[string]int64{}
	bad := ParseSockstat([]byte("TCP: inuse 1 orphan\nUDP inuse 2\nRAW: inuse x\nFRAG: inuse 0 memory 9\n"), "Sockstat", m)
	if bad != 3 {
		t.Errorf("bad = %d, want 3", bad)
	}
	if m["Sockstat.TCP.inuse"] != 1 || m["Sockstat.FRAG.memory"] != 9 || len(m) != 3 {
		t.Errorf("got %v", m)
	}
}

// TestParseCounter: unsigned longs above 2^63 wrap, values above 2^64-1 are
// malformed rather than silently wrapped to a wrong figure.
func TestParseCounter(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"-1", -1, true},
		{"9223372036854775808", -9223372036854775808, true},
		{"18446744073709551615", -1, true},
		{"18446744073709551616", 0, false},
		{"30000000000000000000", 0, false},
		{"99999999999999999999", 0, false},
		{"12a", 0, false},
		{"", 0, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := parseCounter([]byte(tc.in))
			if got != tc.want || ok != tc.ok {
				t.Errorf("parseCounter(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestCounterScope(t *testing.T) {
	for name, want := range map[string]string{
		"Sockstat.TCP.orphan": ScopeGlobal, "Sockstat.TCP.alloc": ScopeGlobal, "Sockstat.TCP.mem": ScopeGlobal,
		"Sockstat.TCP.tw": ScopeNetns, "Sockstat.TCP.inuse": ScopeNetns, "TcpExt.TW": ScopeNetns,
		"Tcp.OutRsts": ScopeNetns, "Sockstat6.TCP6.inuse": ScopeNetns,
	} {
		if got := CounterScope(name); got != want {
			t.Errorf("CounterScope(%s) = %s, want %s", name, got, want)
		}
	}
	if !IsGauge("Sockstat.TCP.tw") || !IsGauge("Tcp.CurrEstab") || IsGauge("TcpExt.TW") {
		t.Error("IsGauge")
	}
}

func TestReadCountersNoAllocPerCounter(t *testing.T) {
	r := newCounterReader("testdata/proc-ipv6")
	out := map[string]int64{}
	r.read(out)
	n := len(out)
	allocs := testing.AllocsPerRun(20, func() {
		clear(out)
		r.read(out)
	})
	// Opening 4 files costs a few allocations each; none per counter.
	if allocs > 40 || n < 100 {
		t.Fatalf("%.0f allocations for %d counters", allocs, n)
	}
}

func FuzzParseSNMP(f *testing.F) {
	f.Add(readFixture(f, "testdata/proc-ipv6/net/netstat"), "TcpExt")
	f.Add(readFixture(f, "testdata/proc-ipv6/net/snmp"), "Tcp")
	f.Add([]byte("Tcp: A\nTcp: -1\n"), "")
	f.Fuzz(func(t *testing.T, b []byte, keep string) {
		m := map[string]int64{}
		ParseSNMP(b, keep, m)
		for k := range m {
			if keep != "" && !strings.HasPrefix(k, keep+".") {
				t.Fatalf("key %q outside section %q", k, keep)
			}
		}
	})
}

func FuzzParseSockstat(f *testing.F) {
	f.Add(readFixture(f, "testdata/proc-ipv6/net/sockstat"))
	f.Add(readFixture(f, "testdata/proc-ipv6/net/sockstat6"))
	f.Add(readFixture(f, "testdata/proc-noipv6/net/sockstat"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m := map[string]int64{}
		ParseSockstat(b, "Sockstat", m)
		for k := range m {
			if !strings.HasPrefix(k, "Sockstat.") {
				t.Fatalf("key %q without the Sockstat. prefix", k)
			}
		}
	})
}
