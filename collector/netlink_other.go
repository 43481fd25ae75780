//go:build !linux

package collector

import "errors"

// ErrNetlink marks a failure of the sock_diag source, which exists on Linux
// only.
var ErrNetlink = errors.New("sock_diag")

type netlinkSource struct{ retries uint64 }

func newNetlinkSource(string, []int, *portSet) (*netlinkSource, error) {
	return nil, ErrNetlink
}

func (*netlinkSource) name() string                   { return SourceNetlink }
func (*netlinkSource) count(resetSink, *Counts) error { return ErrNetlink }
func (*netlinkSource) close() error                   { return nil }
