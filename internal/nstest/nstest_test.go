package nstest

import (
	"net"
	"os"
	"strings"
	"testing"
)

// TestRunIsolates checks that the body really runs in another namespace:
// the host's interfaces are not visible and loopback works.
func TestRunIsolates(t *testing.T) {
	hostIfaces, _ := net.Interfaces()
	Run(t, func(t *testing.T) {
		ifs, err := net.Interfaces()
		if err != nil {
			t.Fatal(err)
		}
		if len(ifs) != 1 || ifs[0].Name != "lo" {
			t.Fatalf("interfaces inside = %v, want only lo (host has %d)", ifs, len(hostIfaces))
		}
		if ifs[0].Flags&net.FlagUp == 0 {
			t.Fatal("loopback is down inside")
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		b, err := os.ReadFile("/proc/net/dev")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Count(string(b), ":") != 1 {
			t.Fatalf("/proc/net/dev inside lists more than lo:\n%s", b)
		}
	})
}
