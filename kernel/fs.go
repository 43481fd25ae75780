// Package kernel is closeload's one view of the kernel's files: /proc and
// /proc/sys rooted at an injectable path (in the manner of
// prometheus/procfs), so the collector, the sysctl registry, verify's
// experiments and the runner read the same files the same way, tests read
// fixture trees, and a sampler can read another process's network
// namespace through /proc/PID. Parsers take an io.Reader. The package also
// holds the one definition of an orphaned socket and, on Linux, the one way
// closeload makes a network namespace.
package kernel

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultRoot is where procfs is mounted.
const DefaultRoot = "/proc"

// ErrNotExist marks a kernel file that is not there: a key this kernel
// lacks, a global key inside a network namespace, IPv6 turned off.
var ErrNotExist = fs.ErrNotExist

// ErrFormat marks a kernel file whose content does not have the kernel's
// format.
var ErrFormat = errors.New("unexpected format of a kernel file")

// FS is procfs at a root: "/proc", "/proc/PID" (that process's network
// namespace) or a fixture tree.
type FS struct{ root string }

// NewFS returns the view rooted at root ("" means /proc).
func NewFS(root string) FS {
	if root == "" {
		root = DefaultRoot
	}
	return FS{root: root}
}

// Root is the directory the view reads.
func (f FS) Root() string {
	if f.root == "" {
		return DefaultRoot
	}
	return f.root
}

// Path is a file of the view, rel being relative to the root
// ("net/netstat", "sys/net/ipv4/tcp_fin_timeout").
func (f FS) Path(rel string) string { return filepath.Join(f.Root(), rel) }

// Open opens a file of the view.
func (f FS) Open(rel string) (*os.File, error) { return os.Open(f.Path(rel)) }

// SysctlPath is the file of a dotted sysctl name (net.ipv4.tcp_tw_reuse).
// Names are checked by their registry before they get here; the Clean is a
// second guard against leaving /proc/sys.
func (f FS) SysctlPath(name string) string {
	rel := filepath.Clean("/" + strings.ReplaceAll(name, ".", "/"))[1:]
	return f.Path(filepath.Join("sys", rel))
}

// Sysctl reads a sysctl's value, fields joined by single spaces.
func (f FS) Sysctl(name string) (string, error) {
	b, err := os.ReadFile(f.SysctlPath(name))
	if err != nil {
		return "", err
	}
	return strings.Join(strings.Fields(string(b)), " "), nil
}

// WriteSysctl writes a sysctl's value (the caller reads it back: the
// kernel may clamp it).
func (f FS) WriteSysctl(name, value string) error {
	fh, err := os.OpenFile(f.SysctlPath(name), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, werr := fh.WriteString(value + "\n")
	cerr := fh.Close()
	if werr != nil {
		return werr
	}
	return cerr
}

// NetTCP opens /proc/net/tcp (ipv6 false) or /proc/net/tcp6.
func (f FS) NetTCP(ipv6 bool) (*os.File, error) {
	if ipv6 {
		return f.Open("net/tcp6")
	}
	return f.Open("net/tcp")
}

// PortRange reads net.ipv4.ip_local_port_range.
func (f FS) PortRange() (lo, hi int, err error) {
	v, err := f.Sysctl("net.ipv4.ip_local_port_range")
	if err != nil {
		return 0, 0, err
	}
	lo, hi, ok := ParsePortRange(v)
	if !ok {
		return 0, 0, fmt.Errorf("%w: ip_local_port_range %q", ErrFormat, v)
	}
	return lo, hi, nil
}

// ParsePortRange reads "LOW HIGH" as ip_local_port_range holds it.
func ParsePortRange(s string) (lo, hi int, ok bool) {
	fs := strings.Fields(s)
	if len(fs) != 2 {
		return 0, 0, false
	}
	lo, err1 := strconv.Atoi(fs[0])
	hi, err2 := strconv.Atoi(fs[1])
	return lo, hi, err1 == nil && err2 == nil && lo > 0 && lo <= hi && hi <= 65535
}

// MemAvailable reads MemAvailable from /proc/meminfo, in bytes.
func (f FS) MemAvailable() (int64, error) {
	fh, err := f.Open("meminfo")
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	return ParseMemAvailable(fh)
}

// ParseMemAvailable reads the MemAvailable line of /proc/meminfo.
func ParseMemAvailable(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "MemAvailable:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil || kb < 0 {
			return 0, fmt.Errorf("%w: meminfo MemAvailable %q", ErrFormat, v)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%w: meminfo has no MemAvailable", ErrFormat)
}

// BootID identifies the current boot ("" when unreadable): a journal of
// host settings from another boot must not be restored.
func (f FS) BootID() string {
	b, err := os.ReadFile(f.Path("sys/kernel/random/boot_id"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// NetnsID names the network namespace of the view's process
// ("net:[4026531840]"; a fixture tree may hold a plain file there).
func (f FS) NetnsID() string {
	p := f.Path("self/ns/net")
	if s, err := os.Readlink(p); err == nil {
		return s
	}
	if b, err := os.ReadFile(p); err == nil {
		return strings.TrimSpace(string(b))
	}
	return ""
}

// Exe is the binary of a live process of the view, "" when it is gone.
func (f FS) Exe(pid int) string {
	s, err := os.Readlink(f.Path(filepath.Join(strconv.Itoa(pid), "exe")))
	if err != nil {
		return ""
	}
	return s
}
