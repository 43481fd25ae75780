package verify

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"testing"
)

func TestParseProcNetTCP(t *testing.T) {
	tests := []struct {
		file string
		want []Socket
	}{
		{"testdata/proc_net_tcp.txt", []Socket{
			{Local: ap("127.0.0.1:8080"), Remote: ap("0.0.0.0:0"), State: "LISTEN", RxQueue: 3, Inode: 1075},
			{Local: ap("127.0.0.1:40000"), Remote: ap("127.0.0.1:8080"), State: "TIME_WAIT", Timer: 3, TimerTicks: 0x176A},
			{Local: ap("127.0.0.1:40002"), Remote: ap("127.0.0.1:8080"), State: "FIN_WAIT2", Timer: 3, TimerTicks: 0xC3},
			{Local: ap("127.0.0.1:40004"), Remote: ap("127.0.0.1:8080"), State: "FIN_WAIT2", Inode: 4242},
			{Local: ap("127.0.0.1:8080"), Remote: ap("127.0.0.1:40004"), State: "CLOSE_WAIT", RxQueue: 0xFC00, Inode: 4243},
			{Local: ap("127.0.0.1:8080"), Remote: ap("127.0.0.1:40006"), State: "ESTABLISHED", TxQueue: 0x64, Timer: 1, TimerTicks: 0x14, Inode: 4244},
			{Local: ap("127.0.1.11:40008"), Remote: ap("127.0.0.1:8080"), State: "TIME_WAIT", Timer: 3, TimerTicks: 0},
		}},
		{"testdata/proc_net_tcp6.txt", []Socket{
			{Local: ap("[::]:8081"), Remote: ap("[::]:0"), State: "LISTEN", Inode: 5000},
			{Local: ap("127.0.0.1:8081"), Remote: ap("127.0.0.1:40960"), State: "ESTABLISHED", Timer: 2, TimerTicks: 0x5DC, Inode: 5001},
			{Local: ap("[::1]:8082"), Remote: ap("[::1]:40962"), State: "CLOSE_WAIT", Inode: 5002},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseProcNetTCP(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d rows, want %d: %+v", len(got), len(tt.want), got)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("row %d:\n got %+v\nwant %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestParseProcNetTCPBadRows(t *testing.T) {
	for _, line := range []string{
		"   0: 0100007F:1F90",
		"   0: 0100007F 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1",
		"   0: 0100007F:1F90 00000000:0000 ZZ 00000000:00000000 00:00000000 00000000 0 0 1",
		"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 0000000000 00000000 0 0 1",
		"   0: 0100007F:1F90 00000000:0000 0A 0000000000000000 00:00000000 00000000 0 0 1",
		"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 x",
		"   0: 01007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1",
	} {
		_, err := ParseProcNetTCP(bytes.NewReader([]byte(line)))
		if !errors.Is(err, ErrBadRow) {
			t.Errorf("%q: err %v, want ErrBadRow", line, err)
		}
	}
}

func TestOrphaned(t *testing.T) {
	if (Socket{State: "LISTEN"}).Orphaned() {
		t.Error("a listener is not an orphan")
	}
	if !(Socket{State: "FIN_WAIT2"}).Orphaned() || (Socket{State: "FIN_WAIT2", Inode: 7}).Orphaned() {
		t.Error("orphan means inode 0")
	}
}

func FuzzParseProcNetTCP(f *testing.F) {
	for _, name := range []string{"testdata/proc_net_tcp.txt", "testdata/proc_net_tcp6.txt"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:FFFFFFFFFFFFFFFF 0 0 0 1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		// Malformed input may fail, never panic; what parses is well formed.
		socks, _ := ParseProcNetTCP(bytes.NewReader(b))
		for _, s := range socks {
			if !s.Local.IsValid() || !s.Remote.IsValid() || s.State == "" || s.TimerTicks < 0 {
				t.Fatalf("bad socket %+v from %q", s, b)
			}
		}
	})
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
