package runner

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/closeload/closeload/results"
	"github.com/closeload/closeload/workload"
)

// ErrUsage is wrapped by every error in what the user asked for; commands
// exit with status 2 on it.
var ErrUsage = errors.New("usage")

// DefaultMix is what `closeload run` does with no --scenario: the common
// half-close idiom with some abortive closes, so a first run shows both
// TIME_WAIT and RST at work.
const DefaultMix = "client-halfclose:70,linger0:20,unread-close:10"

// Spec is a run as the user asked for it: flag values, unchecked. Validate
// turns it into a Plan or says which flag is wrong and what it accepts.
type Spec struct {
	Scenario        string
	Target          string
	Listen          string
	Conns           int
	Rate            float64
	Arrival         string
	Duration        time.Duration
	Cycles          uint64
	Warmup          time.Duration
	Source          string
	RequestSize     int
	ResponseSize    int
	Hold            time.Duration
	Timeout         time.Duration
	Grace           time.Duration
	Request         string
	Out             string
	RunID           string
	Hlog            string
	Interval        time.Duration
	CollectorSource string
	Sysctls         []string
	HostSysctl      bool
	AllowUnknown    bool
	// Isolate runs in a fresh network namespace even without --sysctl: a
	// clean kernel (no other sockets, per-namespace counters that are ours
	// alone) at default settings.
	Isolate bool
	// Shard ("i/N") and StartAt (RFC 3339) make this process one slice of a
	// run spread over processes or hosts.
	Shard   string
	StartAt string
	// StormSpec holds --storm, --closer, --procs and their kin.
	StormSpec
	Journal   string
	Acceptors int
	// Matrix, Variant and Repeat are set by `closeload matrix` for its
	// children, to place the record in the matrix.
	Matrix  string
	Variant string
	Repeat  int
	// Args are the command-line arguments, kept in the record.
	Args []string
}

// DefaultSpec returns the defaults of `closeload run`.
func DefaultSpec() Spec {
	return Spec{
		Scenario:        DefaultMix,
		Listen:          "127.0.0.1:0",
		Conns:           8,
		Arrival:         "constant",
		Duration:        10 * time.Second,
		RequestSize:     16,
		ResponseSize:    -1,
		Hold:            time.Second,
		Timeout:         5 * time.Second,
		Grace:           2 * time.Second,
		Interval:        time.Second,
		CollectorSource: "auto",
	}
}

// Plan is a validated run.
type Plan struct {
	Spec    Spec
	Mix     workload.Mix
	Target  netip.AddrPort // external target; invalid when built-in
	Builtin bool
	Listen  netip.AddrPort
	Sources []netip.Addr
	Arrival workload.Arrival
	Request []byte
	Out     string
	RunID   string
	// Shard is set when this process runs one slice; Spec then holds the
	// slice's conns, rate and cycles.
	Shard   *results.Shard
	StartAt time.Time
	// Storm is set for the storm shape; Procs is how many processes run
	// the plan (more than one: this one starts them as shards).
	Storm *StormPlan
	Procs int
}

func usage(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUsage}, a...)...)
}

// Validate checks every flag before anything opens a socket.
func (s Spec) Validate() (*Plan, error) {
	p := &Plan{Spec: s}
	var err error
	if s.Shard != "" {
		if p.Shard, err = parseShard(s.Shard); err != nil {
			return nil, err
		}
		if err := applyShard(&p.Spec, p.Shard); err != nil {
			return nil, err
		}
		s = p.Spec
	}
	if s.StartAt != "" {
		if p.StartAt, err = parseStartAt(s.StartAt); err != nil {
			return nil, err
		}
	}
	if p.Mix, err = workload.ParseMix(s.Scenario); err != nil {
		return nil, usage("--scenario: %v", err)
	}
	if s.Conns < 1 || s.Conns > maxConns {
		return nil, usage("--conns %d: want a whole number from 1 to %d (each worker is a thread; beyond that use several processes)", s.Conns, maxConns)
	}
	if s.Rate < 0 || s.Rate != s.Rate || s.Rate > 10e6 {
		return nil, usage("--rate %v: want a positive number of connections per second (0 = closed loop)", s.Rate)
	}
	if p.Arrival, err = workload.ParseArrival(s.Arrival); err != nil {
		return nil, usage("--arrival: %v", err)
	}
	if s.Duration < 0 {
		return nil, usage("--duration %v: want a positive duration such as 10s or 2m", s.Duration)
	}
	if s.Duration == 0 && s.Cycles == 0 {
		return nil, usage("--duration 0 needs --cycles: a run must be bounded")
	}
	if s.Warmup < 0 {
		return nil, usage("--warmup %v: want zero or a positive duration", s.Warmup)
	}
	if s.RequestSize < 0 || s.RequestSize > 1<<30 {
		return nil, usage("--request-size %d: want 0 to 1073741824 bytes", s.RequestSize)
	}
	if s.ResponseSize < -1 || s.ResponseSize > 1<<30 {
		return nil, usage("--response-size %d: want 0 to 1073741824 bytes (-1: 16 from the built-in target, read to EOF from --target)", s.ResponseSize)
	}
	if p.Mix.Has(workload.UnreadClose) && s.RequestSize < 2 {
		return nil, usage("--request-size %d: unread-close needs at least 2 bytes (the target reads half)", s.RequestSize)
	}
	if (p.Mix.Has(workload.StreamEcho)) && s.RequestSize < 1 {
		return nil, usage("--request-size %d: stream-echo needs at least 1 byte to stream", s.RequestSize)
	}
	if s.Hold < 0 {
		return nil, usage("--hold %v: want zero or a positive duration", s.Hold)
	}
	if s.Timeout <= 0 {
		return nil, usage("--timeout %v: want a positive duration", s.Timeout)
	}
	if s.Interval < 10*time.Millisecond {
		return nil, usage("--interval %v: want at least 10ms", s.Interval)
	}
	switch s.CollectorSource {
	case "auto", "netlink", "proc":
	default:
		return nil, usage("--collector-source %q: want auto, netlink or proc", s.CollectorSource)
	}
	if s.Target != "" {
		ap, err := resolveTarget(s.Target)
		if err != nil {
			return nil, usage("--target %q: %v", s.Target, err)
		}
		p.Target = ap
	} else {
		p.Builtin = true
		ap, err := netip.ParseAddrPort(s.Listen)
		if err != nil {
			return nil, usage("--listen %q: want IP:PORT such as 127.0.0.1:0", s.Listen)
		}
		p.Listen = ap
	}
	if s.ResponseSize == -1 {
		// The built-in target sends 16 bytes; an external server's response
		// is read to its end (EOF), as an HTTP/1.0 client does, rather than
		// cut short, which would reset the connection.
		s.ResponseSize = 16
		if !p.Builtin {
			s.ResponseSize = 0
		}
		p.Spec.ResponseSize = s.ResponseSize
	}
	dst := p.Listen.Addr()
	if !p.Builtin {
		dst = p.Target.Addr()
	}
	if s.Source != "" {
		if p.Sources, err = workload.ParseSources(s.Source); err != nil {
			return nil, usage("--source: %v", err)
		}
		if p.Sources[0].Is4() != dst.Unmap().Is4() {
			return nil, usage("--source: addresses are not of the target's family (%s)", dst)
		}
	} else {
		p.Sources = workload.DefaultSources(dst)
	}
	switch {
	case s.Request == "":
	case s.Request == "http":
		if p.Builtin {
			return nil, usage("--request http needs --target: the built-in target does not speak HTTP")
		}
		p.Request = []byte("GET / HTTP/1.1\r\nHost: " + s.Target + "\r\nUser-Agent: closeload\r\nConnection: close\r\n\r\n")
	case strings.HasPrefix(s.Request, "@"):
		b, err := os.ReadFile(s.Request[1:])
		if err != nil {
			return nil, usage("--request %s: %v", s.Request, err)
		}
		p.Request = b
	default:
		return nil, usage("--request %q: want http or @FILE", s.Request)
	}
	p.RunID = s.RunID
	if p.RunID == "" {
		p.RunID = NewRunID()
	} else if strings.ContainsAny(p.RunID, "/\\ \t\n") {
		return nil, usage("--run-id %q: no slashes or spaces", p.RunID)
	}
	p.Out = s.Out
	if p.Out == "" {
		p.Out = filepath.Join("results", p.RunID+".json")
	}
	if err := checkWritable(p.Out); err != nil {
		return nil, usage("--out %s: %v", p.Out, err)
	}
	if s.Hlog != "" {
		if err := checkWritable(s.Hlog); err != nil {
			return nil, usage("--hlog %s: %v", s.Hlog, err)
		}
	}
	if err := s.validateStorm(p); err != nil {
		return nil, err
	}
	return p, nil
}

// resolveTarget accepts host:port with a numeric port; a host name is
// resolved once, here, so that the run measures connections, not DNS.
func resolveTarget(s string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("want HOST:PORT (%v)", err)
	}
	pn, err := strconv.ParseUint(port, 10, 16)
	if err != nil || pn == 0 {
		return netip.AddrPort{}, fmt.Errorf("port %q: want 1-65535", port)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return netip.AddrPortFrom(a.Unmap(), uint16(pn)), nil
	}
	addrs, err := net.LookupHost(host)
	if err != nil || len(addrs) == 0 {
		return netip.AddrPort{}, fmt.Errorf("cannot resolve %q: %v", host, err)
	}
	a, err := netip.ParseAddr(addrs[0])
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(pn)), nil
}

// checkWritable makes sure a file can be created at path (its directory
// exists or can be made, and is writable), without leaving anything behind.
func checkWritable(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".closeload-probe*")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// NewRunID returns a sortable, unique run id: time plus process id.
func NewRunID() string {
	return time.Now().UTC().Format("20060102T150405Z") + "-" + strconv.Itoa(os.Getpid())
}

// maxConns bounds workers per process: each is a thread blocked in the
// kernel with a P of its own, and a process holds at most its descriptor
// limit of connections anyway (20,000 here, two per connection with the
// built-in target).
const maxConns = 10000
