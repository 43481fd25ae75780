package collector

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"

	"github.com/closeload/closeload/kernel"
)

// Counter scopes, as CounterDelta.Scope records them.
const (
	ScopeNetns  = "netns"
	ScopeGlobal = "global"
)

// globalCounters are the counters the kernel keeps for the whole host even
// when read inside a network namespace: TCP orphans, allocated TCP sockets
// and protocol memory are global (tcp_orphan_count, sockets_allocated,
// memory_allocated); everything else closeload reads is per namespace,
// TIME_WAIT (sockstat tw) included.
var globalCounters = map[string]bool{
	"Sockstat.TCP.orphan": true,
	"Sockstat.TCP.alloc":  true,
	"Sockstat.TCP.mem":    true,
	"Sockstat.UDP.mem":    true,
}

// CounterScope says whether the kernel keeps a counter per network namespace
// ("netns") or for the whole host ("global"): a global counter also moves
// with traffic that is not the run's.
func CounterScope(name string) string {
	if globalCounters[name] {
		return ScopeGlobal
	}
	return ScopeNetns
}

// IsGauge reports whether a counter is a level (sockets in use, memory)
// rather than an event count: its delta is a change of level.
func IsGauge(name string) bool {
	if len(name) > 9 && name[:9] == "Sockstat." || len(name) > 10 && name[:10] == "Sockstat6." {
		return true
	}
	switch name {
	case "Tcp.CurrEstab", "Tcp.RtoAlgorithm", "Tcp.RtoMin", "Tcp.RtoMax", "Tcp.MaxConn":
		return true
	}
	return false
}

// counterFiles are the files ReadCounters reads under the procfs root: which
// sections it keeps and whether the file may be missing.
var counterFiles = []struct {
	path     string
	sockstat string // key prefix for sockstat files; "" for snmp-style
	keep     string // snmp-style section kept
	optional bool   // sockstat6 is missing when IPv6 is off
}{
	{path: "net/netstat", keep: "TcpExt"},
	{path: "net/snmp", keep: "Tcp"},
	{path: "net/sockstat", sockstat: "Sockstat"},
	{path: "net/sockstat6", sockstat: "Sockstat6", optional: true},
}

// ErrCounters marks a counter file that could not be read.
var ErrCounters = errors.New("kernel counters")

// ReadCounters reads every field of /proc/net/netstat TcpExt, /proc/net/snmp
// Tcp and /proc/net/sockstat{,6} under procRoot ("" means /proc). Keys are
// "TcpExt.TW", "Tcp.OutRsts", "Sockstat.TCP.tw", "Sockstat.TCP.orphan",
// "Sockstat.sockets.used", "Sockstat6.TCP6.inuse", ... A missing sockstat6
// (IPv6 off) is not an error. On error the map still holds what was read.
func ReadCounters(procRoot string) (map[string]int64, error) {
	r := newCounterReader(procRoot)
	out := make(map[string]int64, 160)
	_, err := r.read(out)
	return out, err
}

// counterReader reads the counter files with a reused buffer and interned
// keys, so a sample allocates nothing per counter.
type counterReader struct {
	// paths are counterFiles' paths under root, joined once.
	paths   []string
	buf     []byte
	scratch []byte
	keys    map[string]string
}

func newCounterReader(root string) *counterReader {
	fs := kernel.NewFS(root)
	paths := make([]string, len(counterFiles))
	for i, f := range counterFiles {
		paths[i] = fs.Path(f.path)
	}
	return &counterReader{paths: paths, buf: make([]byte, 0, 16<<10), keys: map[string]string{}}
}

// read fills out with every counter; parseErrs counts malformed lines.
func (r *counterReader) read(out map[string]int64) (parseErrs int, err error) {
	var errs []error
	for i, f := range counterFiles {
		path := r.paths[i]
		b, rerr := r.readFile(path)
		if rerr != nil {
			if f.optional && errors.Is(rerr, os.ErrNotExist) {
				continue
			}
			errs = append(errs, fmt.Errorf("%w: %v", ErrCounters, rerr))
			continue
		}
		var n int
		if f.sockstat != "" {
			n = r.parseSockstat(b, f.sockstat, out)
		} else {
			n = r.parseSNMP(b, f.keep, out)
		}
		if n > 0 {
			parseErrs += n
			errs = append(errs, fmt.Errorf("%w: %s: %d malformed lines", ErrParse, path, n))
		}
	}
	return parseErrs, errors.Join(errs...)
}

func (r *counterReader) readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r.buf = r.buf[:0]
	for range 1 << 12 { // bounded: 4096 reads
		if len(r.buf) == cap(r.buf) {
			r.buf = append(r.buf, 0)[:len(r.buf)]
		}
		n, err := f.Read(r.buf[len(r.buf):cap(r.buf)])
		r.buf = r.buf[:len(r.buf)+n]
		if err == io.EOF {
			return r.buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%s: too large", path)
}

// key returns section+"."+field (+"."+sub), interned.
func (r *counterReader) key(parts ...[]byte) string {
	r.scratch = r.scratch[:0]
	for i, p := range parts {
		if i > 0 {
			r.scratch = append(r.scratch, '.')
		}
		r.scratch = append(r.scratch, p...)
	}
	if k, ok := r.keys[string(r.scratch)]; ok {
		return k
	}
	k := string(r.scratch)
	r.keys[k] = k
	return k
}

// ParseSNMP parses the format of /proc/net/snmp and /proc/net/netstat — a
// line of field names then a line of values, each starting "Section:" — into
// out with keys "Section.Field". Only the section named keep is kept (all
// when keep is ""). It returns the number of malformed lines.
func ParseSNMP(b []byte, keep string, out map[string]int64) int {
	return newCounterReader("").parseSNMP(b, keep, out)
}

// ParseSockstat parses /proc/net/sockstat or sockstat6 ("TCP: inuse 1 orphan
// 0 tw 0 alloc 1 mem 2") into out with keys prefix+".TCP.tw"; prefix is
// "Sockstat" or "Sockstat6". It returns the number of malformed lines.
func ParseSockstat(b []byte, prefix string, out map[string]int64) int {
	return newCounterReader("").parseSockstat(b, prefix, out)
}

func (r *counterReader) parseSNMP(b []byte, keep string, out map[string]int64) (bad int) {
	var head []byte // the pending header line
	lines := splitLines(b)
	for line := range lines {
		s, e := nextField(line, 0)
		if s == e {
			continue
		}
		sec := line[s:e]
		if sec[len(sec)-1] != ':' {
			bad++
			head = nil
			continue
		}
		if head == nil {
			head = line
			continue
		}
		hs, he := nextField(head, 0)
		if string(head[hs:he]) != string(sec) {
			// A header without values: take this line as the new header.
			bad++
			head = line
			continue
		}
		name := sec[:len(sec)-1]
		if keep != "" && string(name) != keep {
			head = nil
			continue
		}
		hp, vp := he, e
		for {
			var ks, ke, vs, ve int
			ks, ke = nextField(head, hp)
			vs, ve = nextField(line, vp)
			hp, vp = ke, ve
			if ks == ke && vs == ve {
				break
			}
			if ks == ke || vs == ve {
				bad++
				break
			}
			v, ok := parseCounter(line[vs:ve])
			if !ok {
				bad++
				continue
			}
			out[r.key(name, head[ks:ke])] = v
		}
		head = nil
	}
	if head != nil {
		bad++
	}
	return bad
}

func (r *counterReader) parseSockstat(b []byte, prefix string, out map[string]int64) (bad int) {
	pre := []byte(prefix)
	for line := range splitLines(b) {
		s, e := nextField(line, 0)
		if s == e {
			continue
		}
		proto := line[s:e]
		if proto[len(proto)-1] != ':' || len(proto) < 2 {
			bad++
			continue
		}
		proto = proto[:len(proto)-1]
		p := e
		for {
			ks, ke := nextField(line, p)
			if ks == ke {
				break
			}
			vs, ve := nextField(line, ke)
			p = ve
			if vs == ve {
				bad++
				break
			}
			v, ok := parseCounter(line[vs:ve])
			if !ok {
				bad++
				continue
			}
			out[r.key(pre, proto, line[ks:ke])] = v
		}
	}
	return bad
}

// parseCounter reads a decimal counter: signed (Tcp MaxConn is -1) or an
// unsigned long above 2^63, kept modulo 2^64 so deltas stay right.
func parseCounter(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	if b[0] == '-' {
		v, err := strconv.ParseInt(string(b), 10, 64)
		return v, err == nil
	}
	var v uint64
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return 0, false
		}
		d := uint64(ch - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, false // above 2^64-1: no kernel counter
		}
		v = v*10 + d
	}
	return int64(v), true
}

// splitLines yields the lines of b without their newlines.
func splitLines(b []byte) func(yield func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for len(b) > 0 {
			i := 0
			for i < len(b) && b[i] != '\n' {
				i++
			}
			if !yield(b[:i]) {
				return
			}
			if i == len(b) {
				return
			}
			b = b[i+1:]
		}
	}
}
