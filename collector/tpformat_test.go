package collector

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readFormatFixture(t testing.TB, name string) TracepointFormat {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "tracepoint", name+".format"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := ParseTracepointFormat(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return f
}

func TestParseTracepointFormatFixtures(t *testing.T) {
	cases := []struct {
		file, field  string
		offset, size int
	}{
		{"inet_sock_set_state", "skaddr", 8, 8},
		{"inet_sock_set_state", "oldstate", 16, 4},
		{"inet_sock_set_state", "newstate", 20, 4},
		{"inet_sock_set_state", "sport", 24, 2},
		{"inet_sock_set_state", "dport", 26, 2},
		{"inet_sock_set_state", "protocol", 30, 2},
		{"inet_sock_set_state", "daddr_v6", 56, 16},
		{"tcp_send_reset", "skbaddr", 8, 8},
		{"tcp_send_reset", "state", 24, 4},
		{"tcp_send_reset", "reason", 28, 4},
		{"tcp_send_reset", "saddr", 32, 28},
		{"tcp_receive_reset", "sport", 16, 2},
		{"tcp_receive_reset", "sock_cookie", 64, 8},
	}
	for _, c := range cases {
		t.Run(c.file+"."+c.field, func(t *testing.T) {
			f := readFormatFixture(t, c.file)
			if f.Name != c.file || f.ID == 0 {
				t.Errorf("name %q id %d", f.Name, f.ID)
			}
			fl, err := f.Field(c.field, c.size)
			if err != nil {
				t.Fatal(err)
			}
			if fl.Offset != c.offset {
				t.Errorf("offset %d, want %d", fl.Offset, c.offset)
			}
		})
	}
}

func TestTracepointFieldWrongSize(t *testing.T) {
	f := readFormatFixture(t, "inet_sock_set_state")
	if _, err := f.Field("sport", 4); !errors.Is(err, ErrTracepointFormat) {
		t.Errorf("sport as 4 bytes: %v, want ErrTracepointFormat", err)
	}
	if _, err := f.Field("nosuch"); !errors.Is(err, ErrTracepointFormat) {
		t.Errorf("missing field: %v, want ErrTracepointFormat", err)
	}
}

func TestTracepointSymbols(t *testing.T) {
	send := readFormatFixture(t, "tcp_send_reset")
	reasons := send.Symbols("reason")
	for v, want := range map[int]string{0: "NOT_SPECIFIED", 1: "NO_SOCKET", 8: "TCP_ABORT_ON_DATA", 11: "TCP_ABORT_ON_CLOSE", 12: "TCP_ABORT_ON_LINGER"} {
		if reasons[v] != want {
			t.Errorf("reason %d = %q, want %q", v, reasons[v], want)
		}
	}
	// state's list uses macro names, not numbers: nothing to take.
	if n := len(send.Symbols("state")); n != 0 {
		t.Errorf("state symbols: %d, want 0 (macro names)", n)
	}
	set := readFormatFixture(t, "inet_sock_set_state")
	if st := set.Symbols("newstate"); st[5] != "TCP_FIN_WAIT2" || st[12] != "TCP_NEW_SYN_RECV" {
		t.Errorf("newstate symbols %v", st)
	}
	// oldstate's list ends where its __print_symbolic closes.
	if st := set.Symbols("family"); len(st) != 2 || st[10] != "AF_INET6" {
		t.Errorf("family symbols %v", st)
	}
}

func TestParseTracepointFormatBad(t *testing.T) {
	cases := map[string]string{
		"empty":     "",
		"no fields": "name: x\nID: 3\n",
		"bad id":    "name: x\nID: abc\n",
		"bad field": "name: x\nID: 1\n\tfield:int a;\toffset:x;\tsize:4;\tsigned:1;\n",
		"no name":   "name: x\nID: 1\n\tfield:int ;\toffset:0;\tsize:4;\tsigned:1;\n",
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseTracepointFormat(strings.NewReader(in)); !errors.Is(err, ErrTracepointFormat) {
				t.Errorf("got %v, want ErrTracepointFormat", err)
			}
		})
	}
}

func FuzzParseTracepointFormat(f *testing.F) {
	for _, n := range []string{"inet_sock_set_state", "tcp_send_reset"} {
		b, err := os.ReadFile(filepath.Join("testdata", "tracepoint", n+".format"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b[:min(len(b), 1200)]))
	}
	f.Add("name: x\nID: 1\n\tfield:int a;\toffset:0;\tsize:4;\tsigned:1;\nprint fmt: \"%s\", __print_symbolic(REC->a, { 1, \"(\" })")
	f.Fuzz(func(t *testing.T, in string) {
		tf, err := ParseTracepointFormat(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, fl := range tf.Fields {
			if fl.Size <= 0 || fl.Offset < 0 || fl.Name == "" {
				t.Fatalf("accepted field %+v", fl)
			}
			_ = tf.Symbols(fl.Name)
		}
	})
}
