package collector
import ("testing";"fmt";"net")
func TestTmpRead(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	c, _ := net.Dial("tcp", ln.Addr().String())
	defer c.Close()
	p := uint16(ln.Addr().(*net.TCPAddr).Port)
	for _, ports := range [][]uint16{nil, {1234}, {p}, {1234, p, 999}, {2024, 1, 2, 3, 4}} {
		a, err := CountStates(StateQuery{Ports: ports, Source: "netlink"})
		b, err2 := CountStates(StateQuery{Ports: ports, Source: "proc"})
		fmt.Println(ports, a, err, b, err2)
	}
}
