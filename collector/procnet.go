package collector

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/closeload/closeload/kernel"
)

// ErrParse marks input from /proc that does not have the kernel's format.
// Parsers count malformed lines and go on; this error is returned only when
// nothing usable was read.
var ErrParse = errors.New("malformed /proc input")

// procBufSize is the read buffer of the proc source: large reads make the
// kernel's seq_file produce many rows per system call.
const procBufSize = 256 << 10

// ParseProcNetTCP counts the sockets listed in r, which holds the format of
// /proc/net/tcp or /proc/net/tcp6, into c. Only sockets whose local or remote
// port is in ports count (all when ports is empty). Malformed lines are
// counted in c.ParseErrors. It allocates per call, never per line.
func ParseProcNetTCP(r io.Reader, ports []uint16, c *Counts) error {
	return parseProcNetTCP(r, make([]byte, 64<<10), newPortSet(ports), c, c)
}

// parseProcNetTCP is ParseProcNetTCP with a caller's buffer, port set and
// sink; errs receives parse errors.
func parseProcNetTCP(r io.Reader, buf []byte, ports *portSet, s sink, errs *Counts) error {
	return forEachLine(r, buf, func(line []byte) {
		if line == nil { // longer than the buffer
			errs.ParseErrors++
			return
		}
		state, owned, lport, rport, ok := parseTCPLine(line)
		switch {
		case ok == lineSkip:
		case ok == lineBad:
			errs.ParseErrors++
		case ports.match(lport, rport):
			s.add(state, owned, lport, rport)
		}
	})
}

const (
	lineOK = iota
	lineSkip
	lineBad
)

// parseTCPLine reads one row of /proc/net/tcp{,6}:
//
//	sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
//
// Addresses are hex (8 digits for IPv4, 32 for IPv6, IPv4-mapped included)
// with a 4-digit hex port. The header and blank lines are skipped.
func parseTCPLine(b []byte) (state uint8, owned bool, lport, rport uint16, res int) {
	s, e := nextField(b, 0)
	if s == e {
		return 0, false, 0, 0, lineSkip
	}
	if string(b[s:e]) == "sl" {
		return 0, false, 0, 0, lineSkip
	}
	if b[e-1] != ':' {
		return 0, false, 0, 0, lineBad
	}
	var ok bool
	s, e = nextField(b, e)
	if lport, ok = parseAddrPort(b[s:e]); !ok {
		return 0, false, 0, 0, lineBad
	}
	s, e = nextField(b, e)
	if rport, ok = parseAddrPort(b[s:e]); !ok {
		return 0, false, 0, 0, lineBad
	}
	s, e = nextField(b, e)
	if e-s != 2 {
		return 0, false, 0, 0, lineBad
	}
	st, ok := parseHex(b[s:e])
	if !ok {
		return 0, false, 0, 0, lineBad
	}
	// tx:rx, tr:when, retrnsmt, uid, timeout, then inode.
	for range 5 {
		s, e = nextField(b, e)
		if s == e {
			return 0, false, 0, 0, lineBad
		}
	}
	s, e = nextField(b, e)
	if s == e || e-s > 20 {
		return 0, false, 0, 0, lineBad
	}
	for _, ch := range b[s:e] {
		if ch < '0' || ch > '9' {
			return 0, false, 0, 0, lineBad
		}
		if ch != '0' {
			owned = true
		}
	}
	return uint8(st), owned, lport, rport, lineOK
}

// parseAddrPort checks an "ADDR:PORT" field and returns the port.
func parseAddrPort(f []byte) (uint16, bool) {
	n := len(f)
	if (n != 8+1+4 && n != 32+1+4) || f[n-5] != ':' {
		return 0, false
	}
	p, ok := parseHex(f[n-4:])
	return uint16(p), ok
}

// parseHex parses up to 8 hex digits.
func parseHex(f []byte) (uint32, bool) {
	if len(f) == 0 || len(f) > 8 {
		return 0, false
	}
	var v uint32
	for _, ch := range f {
		switch {
		case ch >= '0' && ch <= '9':
			v = v<<4 | uint32(ch-'0')
		case ch >= 'A' && ch <= 'F':
			v = v<<4 | uint32(ch-'A'+10)
		case ch >= 'a' && ch <= 'f':
			v = v<<4 | uint32(ch-'a'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

// nextField returns the bounds of the next space-separated field at or after
// i; start == end when there is none.
func nextField(b []byte, i int) (start, end int) {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	start = i
	for i < len(b) && b[i] != ' ' && b[i] != '\t' {
		i++
	}
	return start, i
}

// forEachLine calls fn with each line of r (without its newline), reading
// through buf and never allocating. A line longer than buf is skipped and
// reported as fn(nil).
func forEachLine(r io.Reader, buf []byte, fn func(line []byte)) error {
	start, end := 0, 0
	skipping := false
	empty := 0
	for {
		n, err := r.Read(buf[end:])
		end += n
		for {
			i := bytes.IndexByte(buf[start:end], '\n')
			if i < 0 {
				break
			}
			if skipping {
				skipping = false
			} else {
				fn(buf[start : start+i])
			}
			start += i + 1
		}
		if err == io.EOF {
			if start < end && !skipping {
				fn(buf[start:end])
			}
			return nil
		}
		if err != nil {
			return err
		}
		if n == 0 {
			if empty++; empty > 100 {
				return io.ErrNoProgress
			}
		} else {
			empty = 0
		}
		if start > 0 {
			copy(buf, buf[start:end])
			end -= start
			start = 0
		}
		if end == len(buf) {
			if !skipping {
				fn(nil)
			}
			skipping = true
			end = 0
		}
	}
}

// procSource counts states from /proc/net/tcp and tcp6.
type procSource struct {
	root     string
	families []int
	ports    *portSet
	buf      []byte
	// missing6 is set once tcp6 was found missing (IPv6 off): IPv4 only.
	missing6 bool
	notes    []string
}

func newProcSource(root string, families []int, ports *portSet) *procSource {
	return &procSource{root: root, families: families, ports: ports, buf: make([]byte, procBufSize)}
}

func (p *procSource) name() string { return SourceProc }

func (p *procSource) count(s resetSink, errs *Counts) error {
	for _, fam := range p.families {
		fs := kernel.NewFS(p.root)
		path := fs.Path("net/tcp")
		if fam == FamilyIPv6 {
			path = fs.Path("net/tcp6")
		}
		f, err := fs.NetTCP(fam == FamilyIPv6)
		if err != nil {
			if fam == FamilyIPv6 && errors.Is(err, os.ErrNotExist) {
				if !p.missing6 {
					p.missing6 = true
					p.notes = append(p.notes, path+" missing (IPv6 off?): IPv4 sockets only")
				}
				continue
			}
			return fmt.Errorf("proc source: %w", err)
		}
		err = parseProcNetTCP(f, p.buf, p.ports, s, errs)
		f.Close()
		if err != nil {
			return fmt.Errorf("proc source: read %s: %w", path, err)
		}
	}
	return nil
}

func (p *procSource) takeNotes() []string { n := p.notes; p.notes = nil; return n }

func (p *procSource) close() error { return nil }
