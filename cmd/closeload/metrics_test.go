package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startWithMetrics starts the closeload binary with args and returns the
// metrics URL it announces and its stdout lines; the process is killed by
// PID when the test ends.
func startWithMetrics(t *testing.T, args ...string) (url string, stdout *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "metrics: "); ok && strings.HasPrefix(u, "http://") {
				found <- u
			}
		}
		close(found)
	}()
	select {
	case u, ok := <-found:
		if !ok {
			t.Fatalf("closeload %v exited without announcing its metrics URL", args)
		}
		return u, bufio.NewScanner(outPipe)
	case <-time.After(20 * time.Second):
		t.Fatalf("closeload %v did not announce its metrics URL in 20s", args)
	}
	return "", nil
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sample returns the value of the first series of body matching re (a
// regexp over the series name and labels).
func sample(t *testing.T, body, re string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + re + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no series matches %s in:\n%s", re, body)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestServeMetrics(t *testing.T) {
	url, out := startWithMetrics(t, "serve", "--listen", "127.0.0.1:0", "--duration", "60s", "--metrics-listen", "127.0.0.1:0")
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("metrics URL %q, want loopback", url)
	}
	var addr string
	for out.Scan() {
		if a, ok := strings.CutPrefix(out.Text(), "serving client-halfclose on "); ok {
			addr = a
			break
		}
	}
	if addr == "" {
		t.Fatal("serve did not print its address")
	}
	// One real client-halfclose connection: request, FIN, response to EOF.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(make([]byte, 16)); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	if _, err := io.ReadAll(c); err != nil {
		t.Fatal(err)
	}
	c.Close()

	series := `closeload_connections_total\{outcome="completed",run_id="[^"]+",scenario="client-halfclose",side="target"\}`
	deadline := time.Now().Add(10 * time.Second)
	body := get(t, url)
	for sample(t, body, series) != 1 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // the target counts after its Close
		body = get(t, url)
	}
	if v := sample(t, body, series); v != 1 {
		t.Errorf("completed %v, want 1", v)
	}
	if v := sample(t, body, `closeload_connection_attempts_total\{run_id="[^"]+",scenario="client-halfclose",side="target"\}`); v != 1 {
		t.Errorf("attempts %v, want 1", v)
	}
	if v := sample(t, body, `closeload_socket_states\{run_id="[^"]+",side="all",state="LISTEN"\}`); v != 1 {
		t.Errorf("LISTEN sockets %v, want 1", v)
	}
	sample(t, body, `closeload_kernel_counter_total\{counter="Tcp.ActiveOpens",run_id="[^"]+"\}`)
}

func TestWatchMetrics(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	url, _ := startWithMetrics(t, "watch", "--port", port, "--interval", "50ms", "--count", "2000", "--metrics-listen", "127.0.0.1:0")
	series := `closeload_port_socket_states\{port="` + port + `",run_id="[^"]+",state="LISTEN"\}`
	deadline := time.Now().Add(10 * time.Second)
	body := get(t, url)
	for !regexp.MustCompile(series).MatchString(body) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // until the first frame
		body = get(t, url)
	}
	if v := sample(t, body, series); v != 1 {
		t.Errorf("LISTEN on port %s: %v, want 1", port, v)
	}
	sample(t, body, `closeload_kernel_level\{counter="Sockstat.TCP.inuse",run_id="[^"]+"\}`)
}

func TestMetricsListenUsage(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--metrics-listen", "9464"},
		{"watch", "--metrics-listen", "host:port"},
	} {
		t.Run(args[0], func(t *testing.T) {
			code, _, stderr := run(t, args...)
			if code != 2 || !strings.Contains(stderr, "--metrics-listen") {
				t.Errorf("%v: exit %d, stderr %q; want 2 naming --metrics-listen", args, code, stderr)
			}
		})
	}
}
