package kernel

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestParseKallsyms(t *testing.T) {
	for _, tc := range []struct {
		file, name string
		want       uint64
		err        error
	}{
		{"testdata/kallsyms", "tw_timer_handler", 0xffffffff82066a70, nil},
		{"testdata/kallsyms", "tcp_keepalive_timer", 0xffffffff8208d070, nil},
		{"testdata/kallsyms", "no_such_function", 0, ErrNotExist},
		{"testdata/kallsyms-hidden", "tw_timer_handler", 0, ErrHidden},
	} {
		t.Run(tc.file+"/"+tc.name, func(t *testing.T) {
			fh, err := os.Open(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			got, err := ParseKallsyms(fh, tc.name)
			if !errors.Is(err, tc.err) || got != tc.want {
				t.Errorf("ParseKallsyms(%s) = %#x, %v; want %#x, %v", tc.name, got, err, tc.want, tc.err)
			}
		})
	}
}

// TestKernelSymbolLive reads this machine's kallsyms: a function every
// kernel with TCP has is there, or hidden from this reader.
func TestKernelSymbolLive(t *testing.T) {
	addr, err := NewFS("").KernelSymbol("tcp_v4_rcv")
	if errors.Is(err, ErrHidden) {
		t.Skip(err)
	}
	if err != nil || addr == 0 {
		t.Fatalf("tcp_v4_rcv: %#x, %v", addr, err)
	}
}

func FuzzParseKallsyms(f *testing.F) {
	f.Add("ffffffff82066a70 t tw_timer_handler\n")
	f.Add("zz t tw_timer_handler\n")
	f.Fuzz(func(t *testing.T, s string) {
		addr, err := ParseKallsyms(strings.NewReader(s), "tw_timer_handler")
		if err == nil && addr == 0 {
			t.Fatalf("address 0 without an error from %q", s)
		}
	})
}
