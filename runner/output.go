package runner

import (
	"encoding/json"
	"net"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/closeload/closeload/results"
)

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
