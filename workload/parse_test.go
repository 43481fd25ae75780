package workload

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseMix(t *testing.T) {
	tests := []struct {
		spec    string
		want    string
		wantErr string
	}{
		{"client-halfclose", "client-halfclose:1", ""},
		{"client-halfclose:70,linger0:20,unread-close:10", "client-halfclose:70,linger0:20,unread-close:10", ""},
		{" linger0 : 3 , stream-echo ", "linger0:3,stream-echo:1", ""},
		{"", "", "empty"},
		{"client-halfclos", "", `did you mean "client-halfclose"`},
		{"nope", "", "known: client-halfclose"},
		{"linger0:0", "", "weight"},
		{"linger0:x", "", "weight"},
		{"linger0:1001", "", "weight"},
		{"linger0,linger0", "", "twice"},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			m, err := ParseMix(tc.spec)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.String() != tc.want {
				t.Fatalf("mix = %s, want %s", m, tc.want)
			}
		})
	}
}

func TestMixScheduleIsExactAndInterleaved(t *testing.T) {
	m, err := ParseMix("client-halfclose:70,linger0:20,unread-close:10")
	if err != nil {
		t.Fatal(err)
	}
	counts := make([]int, 3)
	longest, run, prev := 0, 0, -1
	for n := uint64(0); n < 1000; n++ {
		i := m.At(n)
		counts[i]++
		if i == prev {
			run++
		} else {
			run = 1
		}
		prev = i
		longest = max(longest, run)
	}
	if counts[0] != 700 || counts[1] != 200 || counts[2] != 100 {
		t.Fatalf("counts over 1000 = %v, want [700 200 100]", counts)
	}
	if longest > 4 {
		t.Fatalf("longest run of one scenario = %d: not interleaved", longest)
	}
}

func TestParseSources(t *testing.T) {
	tests := []struct {
		spec    string
		n       int
		first   string
		last    string
		wantErr bool
	}{
		{"127.0.0.2-127.0.0.17", 16, "127.0.0.2", "127.0.0.17", false},
		{"127.0.0.2,127.0.0.5", 2, "127.0.0.2", "127.0.0.5", false},
		{"127.0.1.0/24", 254, "127.0.1.1", "127.0.1.254", false},
		{"127.0.1.0/31", 2, "127.0.1.0", "127.0.1.1", false},
		{"::1", 1, "::1", "::1", false},
		{"127.0.0.9-127.0.0.2", 0, "", "", true},
		{"127.0.0.1,::1", 0, "", "", true},
		{"10.0.0.0/8", 0, "", "", true},
		{"banana", 0, "", "", true},
		{"", 0, "", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := ParseSources(tc.spec)
			if tc.wantErr {
				if !errors.Is(err, ErrSources) {
					t.Fatalf("err = %v, want ErrSources", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.n || got[0].String() != tc.first || got[len(got)-1].String() != tc.last {
				t.Fatalf("got %d addresses %v..%v, want %d %s..%s", len(got), got[0], got[len(got)-1], tc.n, tc.first, tc.last)
			}
		})
	}
}

func TestDefaultSources(t *testing.T) {
	if got := DefaultSources(netip.MustParseAddr("127.0.0.1")); len(got) != 254 || !got[0].IsLoopback() {
		t.Fatalf("loopback target: %d sources", len(got))
	}
	if got := DefaultSources(netip.MustParseAddr("::1")); got != nil {
		t.Fatalf("IPv6 target: want no default sources, got %v", got)
	}
	if got := DefaultSources(netip.MustParseAddr("192.0.2.1")); got != nil {
		t.Fatalf("non-loopback target: want none, got %d", len(got))
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err  error
		want ErrorClass
	}{
		{syscall.ECONNREFUSED, ErrRefused},
		{syscall.ECONNRESET, ErrReset},
		{syscall.ENOTCONN, ErrReset},
		{syscall.EAGAIN, ErrTimeout},
		{syscall.ETIMEDOUT, ErrTimeout},
		{syscall.EADDRNOTAVAIL, ErrAddrNotAvailable},
		{syscall.EADDRINUSE, ErrAddrNotAvailable},
		{syscall.EMFILE, ErrTooManyFiles},
		{syscall.EPIPE, ErrBrokenPipe},
		{ErrMismatch, ErrDataMismatch},
		{ErrShortRead, ErrOther},
		{syscall.EPERM, ErrOther},
	}
	for _, tc := range tests {
		t.Run(tc.err.Error(), func(t *testing.T) {
			if got := Classify(tc.err); got != tc.want {
				t.Fatalf("Classify(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestQuotaSplitsExactly(t *testing.T) {
	if quotaOf(0, 3, 8) != unbounded {
		t.Fatal("no --cycles must mean no bound")
	}
	if quotaOf(1, 0, 8) != 0 {
		t.Fatal("a worker without a share of the cycles must make none")
	}
	for _, n := range []uint64{1, 7, 100, 1001} {
		for _, w := range []int{1, 3, 8} {
			var sum uint64
			for i := 0; i < w; i++ {
				sum += quotaOf(n, i, w)
			}
			if sum != n {
				t.Fatalf("n=%d w=%d: quotas sum to %d", n, w, sum)
			}
		}
	}
}

func FuzzParseSources(f *testing.F) {
	for _, s := range []string{"127.0.0.2-127.0.0.17", "127.0.1.0/24", "::1", "a,b", "1.2.3.4-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseSources(s)
		if err == nil && (len(got) == 0 || len(got) > maxSources) {
			t.Fatalf("%q: %d addresses without error", s, len(got))
		}
	})
}

func FuzzParseMix(f *testing.F) {
	for _, s := range []string{"client-halfclose:70,linger0:20", "x", ":", ",,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMix(s)
		if err == nil {
			if len(m.Entries) == 0 {
				t.Fatalf("%q: empty mix without error", s)
			}
			_ = m.At(12345)
		}
	})
}

func TestParseOnRefused(t *testing.T) {
	tests := []struct {
		in   string
		want OnRefused
		ok   bool
	}{
		{"", RefusedStop, true},
		{"stop", RefusedStop, true},
		{"continue", RefusedContinue, true},
		{"ignore", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseOnRefused(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("ParseOnRefused(%q) = %v, %v", tc.in, got, err)
			}
			if err == nil && tc.in != "" && got.String() != tc.in {
				t.Errorf("String() = %q, want %q", got.String(), tc.in)
			}
		})
	}
}

func TestUnfinishedMap(t *testing.T) {
	if m := UnfinishedMap([NumStopPhases]uint64{}); m != nil {
		t.Errorf("no unfinished connections gave %v, want nil", m)
	}
	var u [NumStopPhases]uint64
	u[StopDrain], u[StopHeld] = 3, 1
	m := UnfinishedMap(u)
	if len(m) != 2 || m["drain"] != 3 || m["held"] != 1 {
		t.Errorf("UnfinishedMap = %v", m)
	}
}

func TestFaultErrorIsUnrecoverable(t *testing.T) {
	err := fmt.Errorf("run: %w", &FaultError{Class: ErrAddrNotAvailable, Count: 7, Stalled: 2 * time.Second, Example: "cannot assign requested address"})
	var fe *FaultError
	if !errors.Is(err, ErrUnrecoverable) || !errors.As(err, &fe) || fe.Class != ErrAddrNotAvailable {
		t.Fatalf("%v: not an unrecoverable addr-not-available fault", err)
	}
	for _, want := range []string{"addr-not-available", "7 connections", "2s", "cannot assign"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
}

func TestBackoffBounds(t *testing.T) {
	var d time.Duration
	for n := 1; n < 40; n++ {
		d = nextBackoff(n, d)
		switch {
		case n < backoffAfter && d != 0:
			t.Fatalf("pause %v after %d faults, want none before %d", d, n, backoffAfter)
		case n >= backoffAfter && (d < backoffMin || d > backoffMax):
			t.Fatalf("pause %v after %d faults, want %v..%v", d, n, backoffMin, backoffMax)
		}
	}
	if d != backoffMax {
		t.Errorf("pause after many faults %v, want %v", d, backoffMax)
	}
}
