package workload

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ErrSources is returned for a --source value that does not parse.
var ErrSources = errors.New("bad source addresses")

// maxSources bounds a --source expansion; more addresses add nothing.
const maxSources = 65536

// ParseSources parses --source: a comma-separated list of addresses, ranges
// (127.0.0.2-127.0.0.17) and prefixes (127.0.1.0/24). All must be of one
// family. Prefixes shorter than /31 leave out their network and broadcast
// addresses.
func ParseSources(spec string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		var got []netip.Addr
		var err error
		switch {
		case strings.Contains(part, "/"):
			got, err = expandPrefix(part)
		case strings.Contains(part, "-"):
			got, err = expandRange(part)
		default:
			var a netip.Addr
			a, err = netip.ParseAddr(part)
			got = []netip.Addr{a}
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %q: %v (want ADDR, FIRST-LAST or PREFIX/LEN, comma-separated)", ErrSources, part, err)
		}
		out = append(out, got...)
		if len(out) > maxSources {
			return nil, fmt.Errorf("%w: more than %d addresses", ErrSources, maxSources)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: empty (want ADDR, FIRST-LAST or PREFIX/LEN, comma-separated)", ErrSources)
	}
	for _, a := range out[1:] {
		if a.Is4() != out[0].Is4() {
			return nil, fmt.Errorf("%w: mixes IPv4 and IPv6 (%s, %s)", ErrSources, out[0], a)
		}
	}
	return out, nil
}

func expandRange(s string) ([]netip.Addr, error) {
	lo, hi, _ := strings.Cut(s, "-")
	a, err := netip.ParseAddr(strings.TrimSpace(lo))
	if err != nil {
		return nil, err
	}
	b, err := netip.ParseAddr(strings.TrimSpace(hi))
	if err != nil {
		return nil, err
	}
	if a.Is4() != b.Is4() || b.Less(a) {
		return nil, fmt.Errorf("range runs backwards or mixes families")
	}
	var out []netip.Addr
	for x := a; ; x = x.Next() {
		out = append(out, x)
		if x == b {
			return out, nil
		}
		if len(out) > maxSources {
			return nil, fmt.Errorf("more than %d addresses", maxSources)
		}
	}
}

func expandPrefix(s string) ([]netip.Addr, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return nil, err
	}
	p = p.Masked()
	bits := p.Addr().BitLen() - p.Bits()
	if bits > 16 {
		return nil, fmt.Errorf("prefix holds more than %d addresses", maxSources)
	}
	var out []netip.Addr
	for x := p.Addr(); p.Contains(x); x = x.Next() {
		out = append(out, x)
	}
	if p.Addr().Is4() && len(out) > 2 {
		out = out[1 : len(out)-1]
	}
	return out, nil
}

// DefaultSources returns the sources used when --source is not given: for a
// loopback IPv4 target, 254 addresses of 127.0.0.0/8 (all local on Linux,
// nothing to configure), so that connect() finds free ports per 4-tuple
// instead of stalling in its port search. For any other
// target, none: the kernel picks the source.
func DefaultSources(target netip.Addr) []netip.Addr {
	t := target.Unmap()
	if !t.Is4() || !t.IsLoopback() {
		return nil
	}
	out := make([]netip.Addr, 0, 254)
	for i := 1; i <= 254; i++ {
		out = append(out, netip.AddrFrom4([4]byte{127, 77, 0, byte(i)}))
	}
	return out
}
