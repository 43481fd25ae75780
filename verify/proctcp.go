package verify

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	"github.com/closeload/closeload/collector"
	"github.com/closeload/closeload/kernel"
)

// This file reads single rows of /proc/net/tcp{,6}: the per-socket details
// (the TIME_WAIT timer, the descriptor-less "orphan" mark) that verdicts need
// and that the collector's state counts do not carry. Experiments run in a
// namespace of their own, so the rows are only ours and few.

// ErrBadRow marks a /proc/net/tcp line that cannot be parsed.
var ErrBadRow = errors.New("malformed /proc/net/tcp row")

// stateName names a kernel state number as the collector does; a request
// socket (12, NEW_SYN_RECV) is folded into SYN_RECV as there.
func stateName(st uint64) string {
	if st == 12 {
		st = collector.StateSynRecv
	}
	if st < collector.NumStates && collector.StateNames[st] != "" {
		return collector.StateNames[st]
	}
	return fmt.Sprintf("UNKNOWN(%#x)", st)
}

// Socket is one row of /proc/net/tcp or /proc/net/tcp6.
type Socket struct {
	Local  netip.AddrPort `json:"local"`
	Remote netip.AddrPort `json:"remote"`
	State  string         `json:"state"`
	// TxQueue and RxQueue are the bytes in the send and receive queues.
	TxQueue uint64 `json:"tx_queue"`
	RxQueue uint64 `json:"rx_queue"`
	// Timer is the "tr" column: 0 none, 1 retransmit, 2 sk_timer
	// (keepalive; an orphan's FIN_WAIT2 when tcp_fin_timeout > 60 s), 3 a
	// timewait socket (TIME_WAIT, or an orphan's FIN_WAIT2), 4 zero-window
	// probe. TimerTicks is "tm->when", the time left on that timer in clock
	// ticks (USER_HZ, 100 per second).
	Timer      int   `json:"timer"`
	TimerTicks int64 `json:"timer_ticks"`
	// Inode is the socket's inode; 0 means no file descriptor refers to it
	// (an orphan, or a timewait socket).
	Inode uint64 `json:"inode"`
}

// Orphaned reports whether the socket is an orphan: closed by its owner,
// finished by the kernel alone.
func (s Socket) Orphaned() bool {
	for n, name := range collector.StateNames {
		if name == s.State {
			return kernel.Orphaned(uint8(n), s.Inode != 0)
		}
	}
	return false
}

// ParseProcNetTCP parses the text of /proc/net/tcp or /proc/net/tcp6.
func ParseProcNetTCP(r io.Reader) ([]Socket, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<16)
	var out []Socket
	first := true
	for sc.Scan() {
		line := sc.Text()
		if first {
			first = false
			if strings.Contains(line, "local_address") {
				continue
			}
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		s, err := parseTCPRow(line)
		if err != nil {
			return out, err
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

func parseTCPRow(line string) (Socket, error) {
	f := strings.Fields(line)
	if len(f) < 10 || !strings.HasSuffix(f[0], ":") {
		return Socket{}, fmt.Errorf("%w: %q", ErrBadRow, line)
	}
	var s Socket
	var err error
	if s.Local, err = parseHexAddrPort(f[1]); err != nil {
		return Socket{}, fmt.Errorf("%w: local %v", ErrBadRow, err)
	}
	if s.Remote, err = parseHexAddrPort(f[2]); err != nil {
		return Socket{}, fmt.Errorf("%w: remote %v", ErrBadRow, err)
	}
	st, err := strconv.ParseUint(f[3], 16, 8)
	if err != nil {
		return Socket{}, fmt.Errorf("%w: state %q", ErrBadRow, f[3])
	}
	s.State = stateName(st)
	tx, rx, ok := strings.Cut(f[4], ":")
	if !ok {
		return Socket{}, fmt.Errorf("%w: queues %q", ErrBadRow, f[4])
	}
	if s.TxQueue, err = strconv.ParseUint(tx, 16, 64); err != nil {
		return Socket{}, fmt.Errorf("%w: tx_queue %q", ErrBadRow, tx)
	}
	if s.RxQueue, err = strconv.ParseUint(rx, 16, 64); err != nil {
		return Socket{}, fmt.Errorf("%w: rx_queue %q", ErrBadRow, rx)
	}
	tr, when, ok := strings.Cut(f[5], ":")
	if !ok {
		return Socket{}, fmt.Errorf("%w: timer %q", ErrBadRow, f[5])
	}
	t, err1 := strconv.ParseUint(tr, 16, 8)
	w, err2 := strconv.ParseUint(when, 16, 64)
	if err1 != nil || err2 != nil {
		return Socket{}, fmt.Errorf("%w: timer %q", ErrBadRow, f[5])
	}
	// jiffies_delta_to_clock_t prints a negative delta (an overdue timer) as
	// a huge unsigned number; show it as 0 left.
	s.Timer, s.TimerTicks = int(t), int64(w)
	if w > 1<<40 {
		s.TimerTicks = 0
	}
	if s.Inode, err = strconv.ParseUint(f[9], 10, 64); err != nil {
		return Socket{}, fmt.Errorf("%w: inode %q", ErrBadRow, f[9])
	}
	return s, nil
}

// parseHexAddrPort parses "0100007F:1F90" (IPv4) or the 32-digit IPv6 form.
// The kernel prints each 32-bit word of the address as a native integer, so
// the bytes come back in memory order with the host's byte order.
func parseHexAddrPort(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("no port in %q", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port %q", p)
	}
	raw, err := hex.DecodeString(a)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("address %q", a)
	}
	b := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), nil
}
