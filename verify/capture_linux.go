package verify

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A capture counts TCP segments on the experiment namespace's loopback
// with an AF_PACKET socket (permitted to root in the namespace, and so in a
// user namespace too). It sees only what was sent after it was opened;
// drain reads what has queued up, without blocking.

// ErrBadPacket marks a captured packet that is not a whole IPv4 TCP segment.
var ErrBadPacket = errors.New("not an IPv4 TCP segment")

// TCP header flags.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
)

// segment is one TCP segment seen on lo.
type segment struct {
	at       time.Time // when the kernel queued it to the capture
	src, dst uint16
	flags    uint8
	payload  int
}

// label names the segment by its flags: FIN, RST, SYN, ACK (no payload),
// or DATA.
func (s segment) label() string {
	switch {
	case s.flags&tcpRST != 0:
		return "RST"
	case s.flags&tcpSYN != 0:
		return "SYN"
	case s.flags&tcpFIN != 0 && s.payload > 0:
		return "DATA+FIN"
	case s.flags&tcpFIN != 0:
		return "FIN"
	case s.payload > 0:
		return "DATA"
	}
	return "ACK"
}

// parseSegment decodes an IPv4 packet holding a TCP segment.
func parseSegment(p []byte) (segment, error) {
	if len(p) < 20 || p[0]>>4 != 4 || p[9] != unix.IPPROTO_TCP {
		return segment{}, ErrBadPacket
	}
	ihl := int(p[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(p[2:4]))
	if ihl < 20 || total > len(p) || total < ihl+20 {
		return segment{}, fmt.Errorf("%w: lengths ihl %d total %d of %d", ErrBadPacket, ihl, total, len(p))
	}
	t := p[ihl:total]
	doff := int(t[12]>>4) * 4
	if doff < 20 || doff > len(t) {
		return segment{}, fmt.Errorf("%w: data offset %d", ErrBadPacket, doff)
	}
	return segment{
		src:     binary.BigEndian.Uint16(t[0:2]),
		dst:     binary.BigEndian.Uint16(t[2:4]),
		flags:   t[13],
		payload: len(t) - doff,
	}, nil
}

type capture struct{ fd int }

// htons converts a 16-bit protocol number to network byte order.
func htons(v uint16) uint16 { return v<<8 | v>>8 }

// startCapture opens an AF_PACKET socket on lo. It takes every protocol
// (ETH_P_ALL): only such a socket is shown packets as they leave.
func startCapture() (*capture, error) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return nil, fmt.Errorf("AF_PACKET socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: lo.Index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind AF_PACKET to lo: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &capture{fd: fd}, nil
}

// drain returns every segment queued so far between the ports of keep,
// each once (a packet on lo is seen leaving and arriving; the arriving copy
// is skipped).
func (c *capture) drain(keep func(segment) bool) ([]segment, error) {
	var out []segment
	buf := make([]byte, 65536)
	oob := make([]byte, 128)
	for i := 0; i < 100000; i++ {
		n, oobn, _, from, err := unix.Recvmsg(c.fd, buf, oob, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		// Keep the leaving copy: it is stamped with the wall clock when it
		// is sent, where the arriving copy may carry TCP's own monotonic
		// departure time.
		if ll, ok := from.(*unix.SockaddrLinklayer); !ok || ll.Pkttype != unix.PACKET_OUTGOING {
			continue
		}
		s, err := parseSegment(buf[:n])
		if err != nil {
			continue // not TCP: nothing of ours
		}
		s.at = packetTime(oob[:oobn])
		if keep(s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// close releases the capture's socket.
func (c *capture) close() { unix.Close(c.fd) }

// skip discards what has been captured so far.
func (c *capture) skip() error {
	buf := make([]byte, 65536)
	for i := 0; i < 100000; i++ {
		_, _, err := unix.Recvfrom(c.fd, buf, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// packetTime reads the SO_TIMESTAMPNS control message of a packet.
func packetTime(oob []byte) time.Time {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_TIMESTAMPNS && len(m.Data) >= 16 {
			sec := int64(binary.NativeEndian.Uint64(m.Data[0:8]))
			nsec := int64(binary.NativeEndian.Uint64(m.Data[8:16]))
			return time.Unix(sec, nsec)
		}
	}
	return time.Time{}
}

// fmtSegments renders segments as "client FIN → server ACK → …", naming
// each side by whose port sent it.
func fmtSegments(segs []segment, names map[uint16]string) string {
	if len(segs) == 0 {
		return "none"
	}
	parts := make([]string, len(segs))
	for i, s := range segs {
		parts[i] = names[s.src] + " " + s.label()
	}
	return strings.Join(parts, " → ")
}
