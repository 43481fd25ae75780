package results

import (
	"errors"
	"testing"
)

func dwellPhase(t *testing.T, values ...int64) Phase {
	t.Helper()
	h := NewHistogram()
	for _, v := range values {
		if err := h.RecordValue(v); err != nil {
			t.Fatal(err)
		}
	}
	p, err := Summarize(h)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMergeKernelEvents(t *testing.T) {
	a := &KernelEvents{Source: "ebpf", Methods: map[string]string{"dwell": "a"}, Untracked: 1, Groups: []EventGroup{{
		Scenario: "linger0", Side: SideClient, Port: 9000,
		Transitions: []Transition{{From: "ESTABLISHED", To: "CLOSE", Count: 3}},
		ResetsSent:  map[string]uint64{"CLOSE": 3}, ResetReasons: map[string]uint64{"TCP_STATE": 3},
		Dwell: map[string]Phase{"ESTABLISHED": dwellPhase(t, 1000, 2000, 3000)},
	}}}
	b := &KernelEvents{Source: "ebpf", Methods: map[string]string{"dwell": "b", "resets": "b"}, Untracked: 2, Groups: []EventGroup{
		{Scenario: "linger0", Side: SideClient, Port: 9000,
			Transitions: []Transition{{From: "ESTABLISHED", To: "CLOSE", Count: 2}, {From: "CLOSE", To: "SYN_SENT", Count: 2}},
			ResetsSent:  map[string]uint64{"CLOSE": 2},
			Dwell:       map[string]Phase{"ESTABLISHED": dwellPhase(t, 4000, 5000)}},
		{Scenario: "client-halfclose", Side: SideTarget, TimeWaitHandovers: map[string]uint64{"FIN_WAIT2": 7}},
	}}
	m, err := MergeKernelEvents(a, nil, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Groups) != 2 || m.Groups[0].Scenario != "client-halfclose" {
		t.Fatalf("groups %+v, want client-halfclose then linger0", m.Groups)
	}
	g := m.Group("linger0", SideClient)
	if g.Count("ESTABLISHED", "CLOSE") != 5 || g.Count("CLOSE", "SYN_SENT") != 2 || g.ResetsSent["CLOSE"] != 5 || g.ResetReasons["TCP_STATE"] != 3 {
		t.Errorf("merged counts %+v", g)
	}
	if d := g.Dwell["ESTABLISHED"]; d.Count != 5 || d.Max < 4990 || d.Min > 1001 {
		t.Errorf("merged dwell %+v, want 5 values 1000..5000", d)
	}
	if m.Untracked != 3 || m.Methods["dwell"] != "a" || m.Methods["resets"] != "b" {
		t.Errorf("untracked %d methods %v", m.Untracked, m.Methods)
	}
	if a.Groups[0].Count("ESTABLISHED", "CLOSE") != 3 {
		t.Error("merge changed its input")
	}
	if m, err := MergeKernelEvents(nil, nil); m != nil || err != nil {
		t.Errorf("all nil: %v %v", m, err)
	}
	bad := &KernelEvents{Groups: []EventGroup{{Scenario: "linger0", Side: SideClient, Dwell: map[string]Phase{"ESTABLISHED": {Count: 1, Histogram: "not base64"}}}}}
	if _, err := MergeKernelEvents(a, bad); !errors.Is(err, ErrHistogram) {
		t.Errorf("bad histogram: %v, want ErrHistogram", err)
	}
}
