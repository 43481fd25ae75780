package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// ErrListenAddr is wrapped by every error about a listen address.
var ErrListenAddr = errors.New("metrics listen address")

// DefaultHost is where an address without a host listens: the loopback
// interface, so that a run's figures are not published to the network
// unless the user names a host.
const DefaultHost = "127.0.0.1"

// MetricsPath is the path the figures are served on; every other path
// answers 404.
const MetricsPath = "/metrics"

// ListenAddr checks a listen address and fills in the loopback host when it
// has none: ":9464" becomes "127.0.0.1:9464", "0.0.0.0:9464" and
// "[::1]:9464" stay as they are. Port 0 picks a free port.
func ListenAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%w %q: want [HOST]:PORT such as :9464 or 0.0.0.0:9464", ErrListenAddr, addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", fmt.Errorf("%w %q: port %q is not a number from 0 to 65535", ErrListenAddr, addr, port)
	}
	if host == "" {
		host = DefaultHost
	}
	return net.JoinHostPort(host, port), nil
}

// Server is a running metrics endpoint.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	done chan error
}

// Listen starts serving e on addr (see ListenAddr) at MetricsPath. It
// returns once the port is bound, so a bad or busy address fails here.
func Listen(addr string, e *Exporter) (*Server, error) {
	a, err := ListenAddr(addr)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", a)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrListenAddr, err)
	}
	return ServeListener(ln, e), nil
}

// ServeListener serves e at MetricsPath on a listener opened elsewhere: a
// run in a fresh network namespace serves on a socket its parent opened in
// the caller's namespace, where Prometheus can reach it.
func ServeListener(ln net.Listener, e *Exporter) *Server {
	mux := http.NewServeMux()
	mux.Handle(MetricsPath, e.Handler())
	s := &Server{ln: ln, done: make(chan error, 1), srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
	}}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s
}

// Addr is the address the server listens on (with the port chosen when
// port 0 was asked for).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// URL is the address to scrape.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() + MetricsPath }

// Close stops the server, letting a scrape in progress finish for up to a
// second.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// Serve serves e on addr until ctx ends.
func Serve(ctx context.Context, addr string, e *Exporter) error {
	s, err := Listen(addr, e)
	if err != nil {
		return err
	}
	<-ctx.Done()
	return s.Close()
}
