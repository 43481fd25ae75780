package sysctl

import (
	"errors"
	"strings"
	"testing"
)

func TestParseAssignments(t *testing.T) {
	tests := []struct {
		name    string
		specs   []string
		unknown bool
		want    []Assignment
		err     error
		msg     []string // substrings the error must contain
	}{
		{name: "one", specs: []string{"net.ipv4.tcp_tw_reuse=1"},
			want: []Assignment{{"net.ipv4.tcp_tw_reuse", "1"}}},
		{name: "normalised fields", specs: []string{"net.ipv4.ip_local_port_range= 1024\t 65000 ", "net.ipv4.tcp_fin_timeout=015"},
			want: []Assignment{{"net.ipv4.ip_local_port_range", "1024 65000"}, {"net.ipv4.tcp_fin_timeout", "15"}}},
		{name: "triple", specs: []string{"net.ipv4.tcp_rmem=4096 131072 6291456"},
			want: []Assignment{{"net.ipv4.tcp_rmem", "4096 131072 6291456"}}},
		{name: "no equals", specs: []string{"net.ipv4.tcp_tw_reuse"}, err: ErrMalformed, msg: []string{"key=value"}},
		{name: "empty key", specs: []string{"=1"}, err: ErrMalformed},
		{name: "unknown names nearest", specs: []string{"net.ipv4.tcp_tw_reus=1"}, err: ErrUnknownKey,
			msg: []string{"did you mean net.ipv4.tcp_tw_reuse?", "--allow-unknown-sysctl"}},
		{name: "bare name", specs: []string{"tcp_fin_timeout=30"}, err: ErrUnknownKey,
			msg: []string{"did you mean net.ipv4.tcp_fin_timeout?"}},
		{name: "out of range", specs: []string{"net.ipv4.tcp_tw_reuse=3"}, err: ErrBadValue, msg: []string{"out of range", "0..2"}},
		{name: "negative", specs: []string{"net.core.somaxconn=-1"}, err: ErrBadValue, msg: []string{"out of range"}},
		{name: "hex", specs: []string{"net.ipv4.tcp_fin_timeout=0x10"}, err: ErrBadValue, msg: []string{"not a decimal integer"}},
		{name: "plus sign", specs: []string{"net.ipv4.tcp_fin_timeout=+5"}, err: ErrBadValue},
		{name: "empty value", specs: []string{"net.ipv4.tcp_fin_timeout="}, err: ErrBadValue, msg: []string{"want an integer"}},
		{name: "too many fields", specs: []string{"net.ipv4.tcp_fin_timeout=60 70"}, err: ErrBadValue},
		{name: "too few fields", specs: []string{"net.ipv4.ip_local_port_range=1024"}, err: ErrBadValue, msg: []string{"2 integers"}},
		{name: "descending range", specs: []string{"net.ipv4.ip_local_port_range=60000 1024"}, err: ErrBadValue, msg: []string{"low <= high"}},
		{name: "port beyond 65535", specs: []string{"net.ipv4.ip_local_port_range=1024 65536"}, err: ErrBadValue},
		{name: "reuse delay zero", specs: []string{"net.ipv4.tcp_tw_reuse_delay=0"}, err: ErrBadValue},
		{name: "overflow", specs: []string{"net.ipv4.tcp_max_tw_buckets=99999999999999999999"}, err: ErrBadValue},
		{name: "duplicate", specs: []string{"net.ipv4.tcp_tw_reuse=1", "net.ipv4.tcp_tw_reuse=0"}, err: ErrDuplicate},
		{name: "one bad spoils all", specs: []string{"net.ipv4.tcp_tw_reuse=1", "net.ipv4.tcp_fin_timeout=x"}, err: ErrBadValue},
		{name: "unknown allowed", specs: []string{"net.ipv4.tcp_congestion_control=reno"}, unknown: true,
			want: []Assignment{{"net.ipv4.tcp_congestion_control", "reno"}}},
		{name: "unknown not allowed", specs: []string{"net.ipv4.tcp_congestion_control=reno"}, err: ErrUnknownKey},
		{name: "traversal", specs: []string{"net.ipv4/../../kernel.x=1"}, unknown: true, err: ErrUnknownKey, msg: []string{"well-formed"}},
		{name: "dot dot", specs: []string{"net..ipv4.x=1"}, unknown: true, err: ErrUnknownKey},
		{name: "not net", specs: []string{"kernel.panic=1"}, unknown: true, err: ErrUnknownKey},
		{name: "unknown value newline", specs: []string{"net.ipv4.x=a\nb"}, unknown: true, err: ErrBadValue},
		{name: "registry still ranged with unknown allowed", specs: []string{"net.ipv4.tcp_tw_reuse=7"}, unknown: true, err: ErrBadValue},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAssignments(tc.specs, tc.unknown)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				if got != nil {
					t.Fatalf("got %v with an error", got)
				}
				for _, m := range tc.msg {
					if !strings.Contains(err.Error(), m) {
						t.Errorf("error %q does not say %q", err, m)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("got[%d] = %v, want %v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestCheckIsolatable(t *testing.T) {
	tests := []struct {
		name string
		as   []Assignment
		bad  string
	}{
		{"netns keys", []Assignment{{"net.ipv4.tcp_tw_reuse", "1"}, {"net.core.somaxconn", "1024"}}, ""},
		{"tcp_mem", []Assignment{{"net.ipv4.tcp_tw_reuse", "1"}, {"net.ipv4.tcp_mem", "1 2 3"}}, "net.ipv4.tcp_mem"},
		{"max orphans", []Assignment{{"net.ipv4.tcp_max_orphans", "10"}}, "net.ipv4.tcp_max_orphans"},
		{"unknown passes", []Assignment{{"net.ipv4.tcp_congestion_control", "reno"}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckIsolatable(tc.as)
			if tc.bad == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrGlobalKey) {
				t.Fatalf("err = %v, want ErrGlobalKey", err)
			}
			for _, m := range []string{tc.bad, "global", "--host-sysctl"} {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not say %q", err, m)
				}
			}
		})
	}
}

func TestRegistryWellFormed(t *testing.T) {
	required := []string{"net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_tw_reuse", "net.ipv4.tcp_tw_reuse_delay",
		"net.ipv4.tcp_max_tw_buckets", "net.ipv4.tcp_timestamps", "net.ipv4.ip_local_port_range",
		"net.ipv4.tcp_orphan_retries", "net.ipv4.tcp_max_orphans", "net.ipv4.tcp_rfc1337",
		"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes",
		"net.ipv4.tcp_max_syn_backlog", "net.ipv4.tcp_syncookies", "net.ipv4.tcp_mem", "net.core.somaxconn"}
	for _, n := range required {
		if _, ok := Lookup(n); !ok {
			t.Errorf("registry lacks %s", n)
		}
	}
	for _, k := range Keys() {
		if !wellFormed.MatchString(k.Name) || k.Fields < 1 || k.Min > k.Max || k.Meaning == "" {
			t.Errorf("bad registry entry %+v", k)
		}
		if k.Scope != ScopeNetns && k.Scope != ScopeGlobal {
			t.Errorf("%s: scope %q", k.Name, k.Scope)
		}
		if want := "sys/" + strings.ReplaceAll(k.Name, ".", "/"); k.Path() != want {
			t.Errorf("%s: path %q, want %q", k.Name, k.Path(), want)
		}
	}
	for _, n := range []string{"net.ipv4.tcp_mem", "net.ipv4.tcp_max_orphans"} {
		if k, _ := Lookup(n); k.Scope != ScopeGlobal {
			t.Errorf("%s must be global", n)
		}
	}
	if k, _ := Lookup("net.ipv4.tcp_fin_timeout"); !strings.Contains(k.Meaning, "orphaned FIN_WAIT_2") {
		t.Errorf("tcp_fin_timeout meaning must say it governs orphaned FIN_WAIT_2 only: %q", k.Meaning)
	}
}

func TestFileStaysUnderRoot(t *testing.T) {
	for _, n := range []string{"net.ipv4.tcp_tw_reuse", "../../etc/passwd", "net/../../../etc/shadow", "..", "/abs"} {
		p := File("/fake/proc", n)
		if p != "/fake/proc/sys" && !strings.HasPrefix(p, "/fake/proc/sys/") {
			t.Errorf("File(%q) = %q escapes /fake/proc/sys", n, p)
		}
	}
}

func TestNearest(t *testing.T) {
	tests := map[string]string{
		"net.ipv4.tcp_fin_timout":    "net.ipv4.tcp_fin_timeout",
		"net.ipv4.tcp_tw_recycle":    "net.ipv4.tcp_tw_reuse",
		"net.ipv6.tcp_tw_reuse":      "net.ipv4.tcp_tw_reuse",
		"net.core.somaxcon":          "net.core.somaxconn",
		"somaxconn":                  "net.core.somaxconn",
		"net.ipv4.local_port_range":  "net.ipv4.ip_local_port_range",
		"zzzzzzzzzzzzzzzzzzzzzzzzzz": "",
	}
	for in, want := range tests {
		if got := Nearest(in); got != want {
			t.Errorf("Nearest(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzParseAssignment checks that parsing never panics, that whatever it
// accepts stays under /proc/sys/net, and that accepted values are a fixed
// point of normalisation.
func FuzzParseAssignment(f *testing.F) {
	for _, s := range []string{"net.ipv4.tcp_tw_reuse=1", "net.ipv4.ip_local_port_range=1024 65000",
		"net.ipv4.tcp_mem=1 2 3", "x", "=", "net..a=1", "net.ipv4/../x=1", "net.ipv4.tcp_fin_timeout=-1"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, spec string, unknown bool) {
		a, err := ParseAssignment(spec, unknown)
		if err != nil {
			return
		}
		if p := File("/proc", a.Key); !strings.HasPrefix(p, "/proc/sys/net/") || strings.Contains(p, "..") {
			t.Fatalf("%q accepted with path %q", spec, p)
		}
		b, err := ParseAssignment(a.String(), unknown)
		if err != nil || b != a {
			t.Fatalf("%q → %v does not re-parse to itself: %v, %v", spec, a, b, err)
		}
	})
}
