// Package httpbench shows closeload used as a library from another module:
// a benchmark of a net/http server's close path, and an isolated run with a
// kernel setting from this test binary.
package httpbench

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/closeload/closeload"
)

// TestMain lets this test binary re-execute itself for runs in a fresh
// network namespace.
func TestMain(m *testing.M) { closeload.TestMain(m) }

func newServer() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("x", 512))
	}))
}

// BenchmarkHTTPClose measures one HTTP/1.1 request with Connection: close
// per op: connect, request, response read to the server's FIN, close.
func BenchmarkHTTPClose(b *testing.B) {
	srv := newServer()
	defer srv.Close()
	for _, scenario := range []string{"full-close", "client-halfclose"} {
		b.Run(scenario, func(b *testing.B) {
			closeload.New(closeload.Scenario(scenario), closeload.HTTP(), closeload.Conns(4)).
				Benchmark(b, srv.Listener.Addr().String())
		})
	}
}

// TestServerSurvivesCloses is a capacity check with thresholds: the server
// completes 2,000 connections with no errors and a bounded p99.
func TestServerSurvivesCloses(t *testing.T) {
	srv := newServer()
	defer srv.Close()
	rec, err := closeload.New(closeload.Scenario("full-close"), closeload.HTTP(), closeload.Conns(4), closeload.Cycles(2000),
		closeload.Threshold("errors<0.1%"), closeload.Threshold("total.p99<1s")).Run(context.Background(), srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if rec.Totals.Cycles != 2000 {
		t.Fatalf("completed %d of 2000", rec.Totals.Cycles)
	}
}

// TestIsolatedBuiltin runs closeload's built-in target in a fresh network
// namespace with tcp_tw_reuse off, through the TestMain hook.
func TestIsolatedBuiltin(t *testing.T) {
	rec, err := closeload.New(closeload.Isolated(), closeload.Sysctl("net.ipv4.tcp_tw_reuse", "0"),
		closeload.Scenario("client-halfclose"), closeload.Conns(2), closeload.Duration(500*time.Millisecond)).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rec.Provenance.Namespace, "isolated") || rec.Sysctls.After["net.ipv4.tcp_tw_reuse"] != "0" {
		t.Fatalf("namespace %q tcp_tw_reuse %q", rec.Provenance.Namespace, rec.Sysctls.After["net.ipv4.tcp_tw_reuse"])
	}
}
