package report

import (
	"bytes"
	"strings"
	"testing"

	"github.com/closeload/closeload/results"
)

func TestWriteKernelEvents(t *testing.T) {
	h := results.NewHistogram()
	for i := int64(1); i <= 100; i++ {
		h.RecordValue(i * 1_000_000) // 1..100 ms
	}
	cw, err := results.Summarize(h)
	if err != nil {
		t.Fatal(err)
	}
	ev := &results.KernelEvents{Source: "ebpf",
		Methods: map[string]string{"time_wait_lifetime": "not measured: fentry refused"},
		Groups: []results.EventGroup{
			{Scenario: "unread-close", Side: results.SideTarget, ResetsSent: map[string]uint64{"CLOSE": 40},
				ResetReasons: map[string]uint64{"TCP_ABORT_ON_CLOSE": 40}},
			{Scenario: "client-halfclose", Side: results.SideTarget, Dwell: map[string]results.Phase{"CLOSE_WAIT": cw, "ESTABLISHED": cw}},
			{Scenario: "client-halfclose", Side: results.SideClient, TimeWaitHandovers: map[string]uint64{"FIN_WAIT2": 100}},
		}}
	var b bytes.Buffer
	if err := WriteKernelEvents(&b, ev); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	containsAll(t, out,
		"kernel events (ebpf):",
		"client-halfclose  target  CLOSE_WAIT  100    50ms  99ms",
		"client-halfclose client: to TIME_WAIT 100 (FIN_WAIT2 100)",
		"unread-close target: RST sent 40 in CLOSE 40 because TCP_ABORT_ON_CLOSE 40",
		"TIME_WAIT lifetime not measured: fentry refused",
	)
	if strings.Contains(out, "ESTABLISHED") {
		t.Errorf("not a closing state, shown anyway:\n%s", out)
	}

	// Mini-sockets followed: their lifetimes are rows, the open and killed
	// ones a line, and no "not measured" line.
	ev = &results.KernelEvents{Source: "ebpf",
		Methods: map[string]string{"time_wait_lifetime": "tracepoints timer:timer_start, ..."},
		Groups: []results.EventGroup{{Scenario: "orphan-finwait2", Side: results.SideClient,
			Dwell:          map[string]results.Phase{results.StateOrphanFinWait2: cw},
			TimeWaitOpen:   map[string]uint64{"TIME_WAIT": 7, results.StateOrphanFinWait2: 2},
			TimeWaitKilled: map[string]uint64{"TIME_WAIT": 3}}}}
	b.Reset()
	if err := WriteKernelEvents(&b, ev); err != nil {
		t.Fatal(err)
	}
	out = b.String()
	containsAll(t, out,
		"orphan-finwait2  client  FIN_WAIT2_ORPHAN  100    50ms  99ms",
		"orphan-finwait2 client: mini-sockets alive at the end 9 (TIME_WAIT 7, FIN_WAIT2_ORPHAN 2); mini-sockets ended before their timer 3 (TIME_WAIT 3)",
	)
	if strings.Contains(out, "not measured") {
		t.Errorf("a measured lifetime called not measured:\n%s", out)
	}
	b.Reset()
	if WriteKernelEvents(&b, nil); b.Len() != 0 {
		t.Errorf("nil events printed %q", b.String())
	}
}

// containsAll reports each of wants that out lacks.
func containsAll(t *testing.T, out string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
}
