package runner

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/closeload/closeload/results"
)

// errIsDir marks an output path that is an existing directory.
var errIsDir = errors.New("is a directory; give a file name")

// checkOutput makes sure a file can be written at path once the run ends,
// without creating anything: "-" is standard output; an existing
// directory is refused; otherwise the nearest existing parent must be a
// writable directory.
func checkOutput(path string) error {
	if path == "-" {
		return nil
	}
	if fi, err := os.Stat(path); err == nil {
		if fi.IsDir() {
			return errIsDir
		}
		return nil
	}
	dir := filepath.Dir(path)
	for {
		fi, err := os.Stat(dir)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s is not a directory", dir)
			}
			if err := accessWrite(dir); err != nil {
				return fmt.Errorf("directory %s: %w", dir, err)
			}
			return nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return err
		}
		dir = parent
	}
}

// hostHasAddr reports whether an interface of this host has a.
func hostHasAddr(a netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true // cannot tell: let connect() say
	}
	for _, ia := range addrs {
		if n, ok := ia.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == a {
				return true
			}
		}
	}
	return false
}

// writeRecord writes the record to path; "-" is standard output.
func writeRecord(path string, r *results.Run, out Output) error {
	if path == "-" {
		b, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return err
		}
		_, err = out.Stdout.Write(append(b, '\n'))
		return err
	}
	return results.Write(path, r)
}

// ShardDir is where a run of several processes keeps its shards' records
// and logs: beside the merged record, in a hidden directory (".RUN.shards")
// so that `closeload report DIR` finds the merged record alone, not the
// merged record and its parts; `closeload report` on the directory itself
// merges the shards again.
func ShardDir(out string) string {
	base := strings.TrimSuffix(filepath.Base(out), filepath.Ext(out))
	return filepath.Join(filepath.Dir(out), "."+base+".shards")
}

// orDiscard fills missing writers.
func (o Output) orDiscard() Output {
	if o.Stdout == nil {
		o.Stdout = discard{}
	}
	if o.Stderr == nil {
		o.Stderr = discard{}
	}
	return o
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }
