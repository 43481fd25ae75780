package verify

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/closeload/closeload/internal/nstest"
)

// runClaim runs one claim's experiment in a fresh network namespace and
// asserts its verdict. The verdicts asserted are what this kernel generation
// (Linux 6.x) shows; a change here is news about the kernel, or a bug.
func runClaim(t *testing.T, name string, want Verdict, conditionHas ...string) {
	t.Helper()
	runClaimFigures(t, name, want, nil, conditionHas...)
}

// span is the range a figure of a claim's evidence must fall in.
type span struct {
	figure string
	lo, hi float64
}

// runClaimFigures is runClaim that also checks the claim's main evidence:
// each named figure must be present and within its span.
func runClaimFigures(t *testing.T, name string, want Verdict, spans []span, conditionHas ...string) {
	t.Helper()
	t.Parallel()
	c, err := Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	nstest.Run(t, func(t *testing.T) {
		env := &Env{Isolated: nstest.Inside(), Helper: testHelper}
		r := Execute(context.Background(), c, env)
		var b strings.Builder
		_ = WriteText(&b, Report{Results: []Result{r}})
		t.Log("\n" + b.String())
		if r.Verdict != want {
			t.Fatalf("%s: verdict %q, want %q\n%s", name, r.VerdictText(), want, b.String())
		}
		for _, s := range conditionHas {
			if !strings.Contains(r.Condition, s) {
				t.Errorf("%s: condition %q lacks %q", name, r.Condition, s)
			}
		}
		for _, sp := range spans {
			v, ok := r.Figures[sp.figure]
			if !ok {
				t.Errorf("%s: no figure %q (have %v)", name, sp.figure, r.Figures)
			} else if v < sp.lo || v > sp.hi {
				t.Errorf("%s: %s = %g, want %g..%g", name, sp.figure, v, sp.lo, sp.hi)
			}
		}
		if r.Error != "" || len(r.Evidence) == 0 || r.Finding == "" || r.Command != Command(name) {
			t.Errorf("%s: incomplete result: %+v", name, r)
		}
	})
}

func TestClaimHalfCloseReceive(t *testing.T) { runClaim(t, "halfclose-receive", Holds) }

func TestClaimHalfCloseEOFEPIPE(t *testing.T) { runClaim(t, "halfclose-eof-epipe", Holds) }

// The resets of the two RST claims are also checked against the eBPF
// tracer's count where it runs (root): the kernel's own account of which
// side reset.
func TestClaimUnreadCloseRST(t *testing.T) {
	if os.Geteuid() != 0 {
		runClaim(t, "unread-close-rst", Holds)
		return
	}
	runClaimFigures(t, "unread-close-rst", Holds, []span{{"ebpf_rst_sent_server", rstConns * 9 / 10, rstConns + 1}, {"ebpf_rst_received_client", rstConns * 9 / 10, rstConns}})
}

func TestClaimCloseWriteTwice(t *testing.T) { runClaim(t, "closewrite-twice", DoesNotHold) }

func TestClaimLinger0(t *testing.T) {
	if os.Geteuid() != 0 {
		runClaim(t, "linger0-fin", DoesNotHold)
		return
	}
	runClaimFigures(t, "linger0-fin", DoesNotHold, []span{{"ebpf_rst_sent_client", lingerConns * 9 / 10, lingerConns}, {"ebpf_rst_received_server", lingerConns * 9 / 10, lingerConns}})
}

func TestClaimFinTimeoutFinWait2(t *testing.T) {
	runClaim(t, "fin-timeout-finwait2", HoldsOnlyWhen, "orphaned")
}

func TestClaimFinTimeoutTimeWait(t *testing.T) { runClaim(t, "fin-timeout-timewait", DoesNotHold) }

func TestClaimTWReuse(t *testing.T) {
	runClaim(t, "tw-reuse", HoldsOnlyWhen, "tcp_tw_reuse=1", "timestamps", "tcp_tw_reuse_delay")
}

func TestClaimTimeWaitCloser(t *testing.T) { runClaim(t, "timewait-closer", Holds) }

func TestClaimCloseWaitLeak(t *testing.T) { runClaim(t, "close-wait-leak", Holds) }

func TestClaimMaxTWBuckets(t *testing.T) { runClaim(t, "max-tw-buckets", Holds) }

func TestClaimBindNoPort(t *testing.T) {
	runClaim(t, "bind-no-port", HoldsOnlyWhen, "tcp_tw_reuse")
}

func TestClaimCloseAfterData(t *testing.T) {
	runClaimFigures(t, "close-after-data", Holds, []span{
		{"control_received_bytes", 2 * cadConns * cadReply, 2 * cadConns * cadReply},
		{"control_rsts", 0, 0},
		{"close_received_bytes", 0, 0},
		{"close_rsts", cadConns * 9 / 10, 2 * cadConns},
		{"close_first_write_ok", cadConns * 9 / 10, cadConns},
		{"close_second_write_failed", cadConns * 9 / 10, cadConns},
	})
}

func TestClaimFinTimeoutCloseWait(t *testing.T) {
	runClaimFigures(t, "fin-timeout-closewait", DoesNotHold, []span{
		{"closewait_end_fin_timeout_1", fcwConns, fcwConns},
		{"closewait_end_fin_timeout_60", fcwConns, fcwConns},
		{"closewait_end_fin_timeout_120", fcwConns, fcwConns},
		{"client_orphans_end_fin_timeout_1", 0, 0},
	})
}

func TestClaimDeadlineReset(t *testing.T) {
	runClaimFigures(t, "deadline-reset", Holds, []span{
		{"timeouts", deadlineRounds, deadlineRounds},
		{"resumed_reads", deadlineRounds, deadlineRounds},
		{"stale_deadline_timeouts", deadlineRounds, deadlineRounds},
		{"reply_bytes", deadlineMsg, deadlineMsg},
		{"rsts", 0, 0},
	})
}

func TestClaimTWReuseServer(t *testing.T) {
	runClaimFigures(t, "tw-reuse-server", DoesNotHold, []span{
		{"completed_reuse_0", twsConns, twsConns},
		{"completed_reuse_1", twsConns, twsConns},
		{"client_ports_reuse_0", 2, twsPorts},
		{"client_ports_reuse_1", 2, twsPorts},
		{"server_timewait_reuse_0", 2, twsPorts},
		{"server_timewait_reuse_1", 2, twsPorts},
		{"twrecycled_reuse_0", 0, 0},
		{"twrecycled_reuse_1", 0, 0},
	})
}

func TestClaimSomaxconnBacklog(t *testing.T) {
	// The accept queue holds limit+1; the rest of the burst overflows.
	over := func(limit float64) (lo, hi float64) { return burstConns - limit - 1 - 3, burstConns - limit - 1 + 3 }
	lo64, hi64 := over(appBacklog)
	lo128, hi128 := over(smallQueue)
	runClaimFigures(t, "somaxconn-backlog", HoldsOnlyWhen, []span{
		{"consistent_with_min_rule", 7, 7},
		{"somaxconn_128_listen_4096_limit", smallQueue, smallQueue},
		{"somaxconn_128_listen_4096_overflows", lo128, hi128},
		{"somaxconn_4096_listen_4096_limit", largeQueue, largeQueue},
		{"somaxconn_4096_listen_4096_overflows", 0, 0},
		{"somaxconn_4096_listen_64_limit", appBacklog, appBacklog},
		{"somaxconn_4096_listen_64_overflows", lo64, hi64},
		{"somaxconn_128_go_fresh_process_limit", smallQueue, smallQueue},
		{"somaxconn_4096_go_fresh_process_limit", largeQueue, largeQueue},
		{"somaxconn_4096_go_fresh_process_overflows", 0, 0},
		{"somaxconn_4096_go_same_process_limit", smallQueue, smallQueue},
	}, "min(backlog, somaxconn)")
}

func TestClaimLingerTimeout(t *testing.T) {
	runClaimFigures(t, "linger-timeout", Holds, []span{
		{"nonreading_queued_at_close", 1, 1 << 30},
		{"nonreading_rsts", 0, 0},
		{"nonreading_delivered_fraction", 1, 1},
		{"reading_delivered_fraction", 1, 1},
	})
}

func TestClaimFourSegmentClose(t *testing.T) {
	runClaimFigures(t, "four-segment-close", HoldsOnlyWhen, []span{
		{"client_first_prompt_segments", 3, 3},
		{"server_first_prompt_segments", 3, 3},
		{"client_first_late_segments", 4, 4},
		{"server_first_late_segments", 4, 4},
		{"client_first_prompt_captured", 3, 3},
		{"server_first_late_captured", 4, 4},
	}, "delayed-ACK")
}
