package collector
import ("testing";"time";"fmt")
func TestTmpCost(t *testing.T) {
	for _, q := range []StateQuery{{Source:"netlink", Ports: []uint16{1}}, {Source:"netlink"}, {Source:"proc", Ports: []uint16{1}}} {
		s, _ := OpenStateSource(q)
		var c Counts
		t0 := time.Now()
		for range 10 { s.Count(&c) }
		fmt.Println(q.Source, q.Ports, time.Since(t0)/10, c.Sockets())
	}
	r := newCounterReader("")
	m := map[string]int64{}
	t0 := time.Now()
	for range 10 { r.read(m) }
	fmt.Println("counters", time.Since(t0)/10)
}
