package closeload_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/closeload/closeload"
)

// A benchmark of a server's close path: every op is one connection that
// sends an HTTP request with Connection: close and reads the response to
// the server's FIN.
func ExampleLoad_Benchmark() {
	benchmark := func(b *testing.B) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		defer srv.Close()
		closeload.New(closeload.Scenario("full-close"), closeload.HTTP(), closeload.Conns(4)).
			Benchmark(b, srv.Listener.Addr().String())
	}
	_ = benchmark
}

// A run against the built-in target with a kernel setting, in a fresh
// network namespace (the test binary's TestMain calls closeload.TestMain).
func ExampleLoad_Run() {
	load := closeload.New(
		closeload.Scenario("orphan-finwait2"),
		closeload.Sysctl("net.ipv4.tcp_fin_timeout", "5"),
		closeload.Duration(2*time.Second),
		closeload.Threshold("errors<0.1%"),
	)
	rec, err := load.Run(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%.0f connections/s, peak FIN_WAIT2 %d\n", rec.Totals.Rate, rec.Peaks["FIN_WAIT2"].Total)
}
