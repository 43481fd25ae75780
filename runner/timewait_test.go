package runner

import (
	"testing"

	"github.com/closeload/closeload/sysctl"
	"github.com/closeload/closeload/workload"
)

// TestTimewaitLifetimeDerived checks which plans have the tracer follow
// timewait mini-sockets: those where their lifetime is the point.
func TestTimewaitLifetimeDerived(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mix     string
		sysctls []sysctl.Assignment
		asked   bool
		want    bool
	}{
		{"default mix", "", nil, false, false},
		{"orphan-finwait2", "orphan-finwait2", nil, false, true},
		{"fin timeout set", "client-halfclose", []sysctl.Assignment{{Key: "net.ipv4.tcp_fin_timeout", Value: "5"}}, false, true},
		{"tw reuse set", "client-halfclose", []sysctl.Assignment{{Key: "net.ipv4.tcp_tw_reuse", Value: "1"}}, false, true},
		{"another sysctl", "client-halfclose", []sysctl.Assignment{{Key: "net.core.somaxconn", Value: "1024"}}, false, false},
		{"asked for", "client-halfclose", nil, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := DefaultPlan()
			if tc.mix != "" {
				m, err := workload.ParseMix(tc.mix)
				if err != nil {
					t.Fatal(err)
				}
				p.Mix = m
			}
			p.Sysctls, p.TimewaitLifetime = tc.sysctls, tc.asked
			if err := p.Validate(); err != nil {
				t.Fatal(err)
			}
			if p.TimewaitLifetime != tc.want {
				t.Errorf("TimewaitLifetime = %v, want %v", p.TimewaitLifetime, tc.want)
			}
		})
	}
}
