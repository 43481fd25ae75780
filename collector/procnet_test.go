package collector

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/closeload/closeload/results"
)

func readFixture(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseProcNetTCP(t *testing.T) {
	tcp := readFixture(t, "testdata/proc-ipv6/net/tcp")
	tcp6 := readFixture(t, "testdata/proc-ipv6/net/tcp6")
	for _, tc := range []struct {
		name      string
		in        []byte
		ports     []uint16
		want      map[string]results.StateCount
		parseErrs uint64
	}{
		{
			name: "tcp all ports", in: tcp, parseErrs: 3,
			want: map[string]results.StateCount{
				"LISTEN": {Total: 2}, "ESTABLISHED": {Total: 3}, "TIME_WAIT": {Total: 2},
				"FIN_WAIT2": {Total: 2, Orphaned: 1}, "CLOSE_WAIT": {Total: 2},
				"LAST_ACK": {Total: 1, Orphaned: 1}, "SYN_SENT": {Total: 1}, "SYN_RECV": {Total: 1},
			},
		},
		{
			name: "tcp port 22", in: tcp, ports: []uint16{22}, parseErrs: 3,
			want: map[string]results.StateCount{"LISTEN": {Total: 1}, "ESTABLISHED": {Total: 1}},
		},
		{
			name: "tcp remote port 40005 only", in: tcp, ports: []uint16{40005}, parseErrs: 3,
			want: map[string]results.StateCount{"LAST_ACK": {Total: 1, Orphaned: 1}},
		},
		{
			name: "tcp6 mapped IPv4 peers on 8080", in: tcp6, ports: []uint16{8080},
			want: map[string]results.StateCount{
				"LISTEN": {Total: 1}, "ESTABLISHED": {Total: 1}, "TIME_WAIT": {Total: 1},
				"FIN_WAIT2": {Total: 1, Orphaned: 1},
			},
		},
		{
			name: "tcp6 port with no sockets", in: tcp6, ports: []uint16{9999},
			want: map[string]results.StateCount{},
		},
		{name: "empty", in: nil, want: map[string]results.StateCount{}},
		{name: "header only", in: []byte(strings.SplitAfter(string(tcp), "\n")[0]), want: map[string]results.StateCount{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// One byte per read exercises the line reassembly too.
			for _, r := range []func() *bytes.Reader{func() *bytes.Reader { return bytes.NewReader(tc.in) }} {
				for _, oneByte := range []bool{false, true} {
					var c Counts
					var err error
					if oneByte {
						err = ParseProcNetTCP(iotest.OneByteReader(r()), tc.ports, &c)
					} else {
						err = ParseProcNetTCP(r(), tc.ports, &c)
					}
					if err != nil {
						t.Fatal(err)
					}
					if got := c.Map(); !equalStates(got, tc.want) {
						t.Errorf("oneByte=%v: got %v, want %v", oneByte, got, tc.want)
					}
					if c.ParseErrors != tc.parseErrs {
						t.Errorf("oneByte=%v: parse errors %d, want %d", oneByte, c.ParseErrors, tc.parseErrs)
					}
				}
			}
		})
	}
}

func equalStates(a, b map[string]results.StateCount) bool {
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

// TestParseProcNetTCPLongLine checks that a line longer than the buffer is
// one parse error and the lines around it still count.
func TestParseProcNetTCPLongLine(t *testing.T) {
	row := "   0: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 1002 1 0 100 0 0 10 0\n"
	in := row + strings.Repeat("x", 300) + "\n" + row
	var c Counts
	err := parseProcNetTCP(strings.NewReader(in), make([]byte, 128), nil, &c, &c)
	if err != nil {
		t.Fatal(err)
	}
	if c.Total[StateEstablished] != 2 || c.ParseErrors != 1 {
		t.Fatalf("established %d parse errors %d, want 2 and 1", c.Total[StateEstablished], c.ParseErrors)
	}
}

func TestParseProcNetTCPNoAllocPerLine(t *testing.T) {
	tcp := readFixture(t, "testdata/proc-ipv6/net/tcp")
	big := bytes.Repeat(tcp, 200)
	buf := make([]byte, 64<<10)
	ports := newPortSet([]uint16{8080})
	var c Counts
	r := bytes.NewReader(big)
	allocs := testing.AllocsPerRun(10, func() {
		r.Reset(big)
		c.reset()
		_ = parseProcNetTCP(r, buf, ports, &c, &c)
	})
	if allocs > 1 {
		t.Fatalf("%.0f allocations to parse %d lines, want none per line", allocs, bytes.Count(big, []byte("\n")))
	}
}

func FuzzParseProcNetTCP(f *testing.F) {
	f.Add(readFixture(f, "testdata/proc-ipv6/net/tcp"))
	f.Add(readFixture(f, "testdata/proc-ipv6/net/tcp6"))
	f.Add([]byte("  0: 0100007F:1F90 0100007F:9C40 06 0:0 0:0 0 0 0 0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var c Counts
		if err := parseProcNetTCP(bytes.NewReader(b), make([]byte, 256), newPortSet([]uint16{8080}), &c, &c); err != nil {
			t.Fatal(err)
		}
		lines := uint64(bytes.Count(b, []byte("\n")) + 1)
		if c.Sockets()+c.ParseErrors > lines {
			t.Fatalf("%d sockets + %d errors from %d lines", c.Sockets(), c.ParseErrors, lines)
		}
		for i := range c.Total {
			if c.Orphaned[i] > c.Total[i] {
				t.Fatalf("state %d: %d orphaned of %d", i, c.Orphaned[i], c.Total[i])
			}
		}
	})
}
