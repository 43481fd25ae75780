package collector

import (
	"errors"
	"testing"

	"github.com/closeload/closeload/results"
)

func TestCountsOrphanRule(t *testing.T) {
	for _, tc := range []struct {
		state    uint8
		owned    bool
		name     string
		orphaned uint64
	}{
		{StateFinWait2, false, "FIN_WAIT2", 1}, // reaped by tcp_fin_timeout
		{StateFinWait2, true, "FIN_WAIT2", 0},  // half-closed with its descriptor
		{StateTimeWait, false, "TIME_WAIT", 0}, // a mini-socket, never split
		{StateLastAck, false, "LAST_ACK", 1},
		{StateFinWait1, false, "FIN_WAIT1", 1},
		{StateClosing, false, "CLOSING", 1},
		{StateCloseWait, false, "CLOSE_WAIT", 0},    // waiting in the accept queue
		{StateEstablished, false, "ESTABLISHED", 0}, // waiting in the accept queue
		{StateSynRecv, false, "SYN_RECV", 0},        // request socket
		{stateNewSynRecv, false, "SYN_RECV", 0},
	} {
		var c Counts
		c.add(tc.state, tc.owned, 1, 2)
		got := c.Get(tc.name)
		if want := (results.StateCount{Total: 1, Orphaned: tc.orphaned}); got != want {
			t.Errorf("state %d owned=%v: %s = %+v, want %+v", tc.state, tc.owned, tc.name, got, want)
		}
	}
	var c Counts
	c.add(0, true, 1, 2)
	c.add(13, true, 1, 2)
	if c.Unknown != 2 || c.Map()["UNKNOWN"].Total != 2 {
		t.Fatalf("unknown states: %+v", c.Map())
	}
}

func TestStateFromSS(t *testing.T) {
	for ss, want := range map[string]string{"ESTAB": "ESTABLISHED", "FIN-WAIT-2": "FIN_WAIT2", "TIME-WAIT": "TIME_WAIT", "SYN-RECV": "SYN_RECV"} {
		if got, ok := StateFromSS(ss); !ok || got != want {
			t.Errorf("StateFromSS(%q) = %q, %v", ss, got, ok)
		}
	}
	if _, ok := StateFromSS("BOGUS"); ok {
		t.Error("BOGUS accepted")
	}
	// Every name ss can print maps to a name closeload uses.
	names := map[string]bool{}
	for _, n := range StateNames {
		names[n] = true
	}
	for _, v := range ssNames {
		if !names[v] {
			t.Errorf("ss name maps to %q, not a state name", v)
		}
	}
}

func TestValidatePorts(t *testing.T) {
	for _, tc := range []struct {
		in   []int
		want []uint16
		err  bool
	}{
		{in: nil, want: []uint16{}},
		{in: []int{80, 443, 80}, want: []uint16{80, 443}},
		{in: []int{1, 65535}, want: []uint16{1, 65535}},
		{in: []int{0}, err: true},
		{in: []int{65536}, err: true},
		{in: []int{-1}, err: true},
	} {
		got, err := ValidatePorts("--port", tc.in)
		if tc.err {
			if !errors.Is(err, ErrBadPort) {
				t.Errorf("%v: err %v, want ErrBadPort", tc.in, err)
			}
			continue
		}
		if err != nil || len(got) != len(tc.want) {
			t.Errorf("%v: %v, %v", tc.in, got, err)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%v: %v", tc.in, got)
			}
		}
	}
}

func TestPortSet(t *testing.T) {
	s := newPortSet([]uint16{8080, 1, 65535, 8080})
	if len(s.ports) != 3 || s.ports[0] != 1 || s.ports[2] != 65535 {
		t.Fatalf("ports %v", s.ports)
	}
	for _, tc := range []struct {
		l, r uint16
		want bool
	}{{8080, 40000, true}, {40000, 8080, true}, {2, 3, false}, {65535, 0, true}, {0, 1, true}} {
		if got := s.match(tc.l, tc.r); got != tc.want {
			t.Errorf("match(%d,%d) = %v", tc.l, tc.r, got)
		}
	}
	var none *portSet
	if !none.match(1, 2) {
		t.Error("an empty port set must match everything")
	}
}

func TestCountStatesBadQuery(t *testing.T) {
	for _, q := range []StateQuery{
		{Ports: []uint16{0}},
		{Source: "sysfs"},
		{Families: []int{1}},
	} {
		if _, err := CountStates(q); err == nil {
			t.Errorf("%+v: no error", q)
		}
	}
	if _, err := CountStates(StateQuery{Ports: []uint16{0}}); !errors.Is(err, ErrBadPort) {
		t.Errorf("port 0: %v", err)
	}
	if _, err := CountStates(StateQuery{Source: "x"}); !errors.Is(err, ErrSource) {
		t.Errorf("source x: %v", err)
	}
}

// TestCountStatesProcRoot reads the fixture trees, one with IPv6 and one
// without (tcp6 missing is IPv6 off, not an error).
func TestCountStatesProcRoot(t *testing.T) {
	got, err := CountStates(StateQuery{ProcRoot: "testdata/proc-ipv6", Source: SourceProc, Ports: []uint16{8080}})
	if err != nil {
		t.Fatal(err)
	}
	// tcp: LISTEN, 2 ESTAB, 2 TW, 2 FW2 (1 orphan), 2 CW, LAST_ACK, SYN_SENT, SYN_RECV;
	// tcp6: LISTEN, ESTAB, TW, FW2 orphan.
	want := map[string]results.StateCount{
		"LISTEN": {Total: 2}, "ESTABLISHED": {Total: 3}, "TIME_WAIT": {Total: 3},
		"FIN_WAIT2": {Total: 3, Orphaned: 2}, "CLOSE_WAIT": {Total: 2},
		"LAST_ACK": {Total: 1, Orphaned: 1}, "SYN_SENT": {Total: 1}, "SYN_RECV": {Total: 1},
	}
	if !equalStates(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	got, err = CountStates(StateQuery{ProcRoot: "testdata/proc-noipv6", Source: SourceProc, Ports: []uint16{8080}})
	if err != nil {
		t.Fatal(err)
	}
	if got["TIME_WAIT"].Total != 2 || got["LISTEN"].Total != 1 {
		t.Fatalf("without tcp6: %v", got)
	}
	s, err := OpenStateSource(StateQuery{ProcRoot: "testdata/proc-noipv6", Source: SourceProc})
	if err != nil {
		t.Fatal(err)
	}
	var c Counts
	if err := s.Count(&c); err != nil {
		t.Fatal(err)
	}
	if n := s.TakeNotes(); len(n) != 1 {
		t.Fatalf("notes %v, want one about tcp6", n)
	}
	if err := s.Count(&c); err != nil || len(s.TakeNotes()) != 0 {
		t.Fatal("the tcp6 note must be given once")
	}
	if _, err := CountStates(StateQuery{ProcRoot: t.TempDir(), Source: SourceProc}); err == nil {
		t.Fatal("a root without net/tcp must be an error, not zero sockets")
	}
}
