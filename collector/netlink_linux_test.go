package collector

import (
	"encoding/binary"
	"errors"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// nlMsg builds one netlink message.
func nlMsg(typ, flags uint16, seq uint32, body []byte) []byte {
	b := make([]byte, 16, 16+len(body)+3)
	binary.NativeEndian.PutUint32(b, uint32(16+len(body)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint16(b[6:], flags)
	binary.NativeEndian.PutUint32(b[8:], seq)
	b = append(b, body...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// diagMsg builds an inet_diag_msg body.
func diagMsg(state uint8, sport, dport uint16, inode uint32) []byte {
	b := make([]byte, sizeofInetDiagMsg+8) // + an attribute the parser skips
	b[0] = unix.AF_INET
	b[offMsgState] = state
	binary.BigEndian.PutUint16(b[offMsgSport:], sport)
	binary.BigEndian.PutUint16(b[offMsgDport:], dport)
	binary.NativeEndian.PutUint32(b[offMsgInode:], inode)
	return b
}

func doneMsg(seq uint32, flags uint16, code int32) []byte {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, uint32(code))
	return nlMsg(unix.NLMSG_DONE, flags|unix.NLM_F_MULTI, seq, b)
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func TestParseDiagReply(t *testing.T) {
	const seq = 7
	sock := func(state uint8, sport, dport uint16, inode uint32, flags uint16) []byte {
		return nlMsg(unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_MULTI|flags, seq, diagMsg(state, sport, dport, inode))
	}
	for _, tc := range []struct {
		name       string
		in         []byte
		ports      []uint16
		done, intr bool
		err        error
		tw, fw2    uint64
		fw2orph    uint64
	}{
		{name: "sockets then done", in: cat(sock(StateTimeWait, 40000, 8080, 0, 0), sock(StateFinWait2, 40001, 8080, 0, 0), sock(StateFinWait2, 40002, 8080, 99, 0), doneMsg(seq, 0, 0)),
			done: true, tw: 1, fw2: 2, fw2orph: 1},
		{name: "more to come", in: sock(StateTimeWait, 1, 2, 0, 0), tw: 1},
		{name: "user-space port filter", in: cat(sock(StateTimeWait, 40000, 8080, 0, 0), sock(StateTimeWait, 40000, 9090, 0, 0)), ports: []uint16{8080}, tw: 1},
		{name: "stale sequence skipped", in: cat(nlMsg(unix.SOCK_DIAG_BY_FAMILY, 0, seq-1, diagMsg(StateTimeWait, 1, 2, 0)), doneMsg(seq-1, 0, 0), sock(StateTimeWait, 1, 2, 0, 0)), tw: 1},
		{name: "dump interrupted", in: cat(sock(StateTimeWait, 1, 2, 0, unix.NLM_F_DUMP_INTR), doneMsg(seq, 0, 0)), done: true, intr: true, tw: 1},
		{name: "interrupted flag on done", in: cat(sock(StateTimeWait, 1, 2, 0, 0), doneMsg(seq, unix.NLM_F_DUMP_INTR, 0)), done: true, intr: true, tw: 1},
		{name: "error", in: nlMsg(unix.NLMSG_ERROR, 0, seq, []byte{0xea, 0xff, 0xff, 0xff}), done: true, err: ErrNetlink},
		{name: "done with error", in: doneMsg(seq, 0, -int32(syscall.ENOBUFS)), done: true, err: ErrNetlink},
		{name: "truncated message", in: sock(StateTimeWait, 1, 2, 0, 0)[:40], err: ErrParse},
		{name: "short inet_diag_msg", in: nlMsg(unix.SOCK_DIAG_BY_FAMILY, 0, seq, make([]byte, 20)), err: ErrParse},
		{name: "length below header", in: cat([]byte{4, 0, 0, 0}, make([]byte, 12)), err: ErrParse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Counts
			done, intr, err := parseDiagReply(tc.in, seq, newPortSet(tc.ports), &c)
			if !errors.Is(err, tc.err) || (err != nil) != (tc.err != nil) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if done != tc.done || intr != tc.intr {
				t.Errorf("done %v intr %v, want %v %v", done, intr, tc.done, tc.intr)
			}
			if c.Total[StateTimeWait] != tc.tw || c.Total[StateFinWait2] != tc.fw2 || c.Orphaned[StateFinWait2] != tc.fw2orph {
				t.Errorf("TW %d FW2 %d (orphaned %d)", c.Total[StateTimeWait], c.Total[StateFinWait2], c.Orphaned[StateFinWait2])
			}
		})
	}
}

// scriptConn answers each request with the next scripted reply.
type scriptConn struct {
	replies [][][]byte // per request: the buffers recv returns
	sent    int
	pending [][]byte
	closed  bool
}

func (s *scriptConn) send(b []byte) error {
	if s.sent >= len(s.replies) {
		return errors.New("unexpected request")
	}
	seq := binary.NativeEndian.Uint32(b[8:])
	s.pending = nil
	for _, r := range s.replies[s.sent] {
		r = append([]byte(nil), r...)
		for off := 0; off+16 <= len(r); {
			binary.NativeEndian.PutUint32(r[off+8:], seq)
			off += int((binary.NativeEndian.Uint32(r[off:]) + 3) &^ 3)
		}
		s.pending = append(s.pending, r)
	}
	s.sent++
	return nil
}

func (s *scriptConn) recv(b []byte) (int, error) {
	if len(s.pending) == 0 {
		return 0, unix.EAGAIN
	}
	n := copy(b, s.pending[0])
	s.pending = s.pending[1:]
	return n, nil
}

func (s *scriptConn) close() error { s.closed = true; return nil }

func TestNetlinkRetriesInterruptedDump(t *testing.T) {
	tw := func(flags uint16) []byte {
		return nlMsg(unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_MULTI|flags, 0, diagMsg(StateTimeWait, 1, 2, 0))
	}
	ok := [][]byte{cat(tw(0), tw(0)), doneMsg(0, 0, 0)}
	intr := [][]byte{cat(tw(0), tw(unix.NLM_F_DUMP_INTR)), tw(0), doneMsg(0, 0, 0)}

	t.Run("retried once", func(t *testing.T) {
		conn := &scriptConn{replies: [][][]byte{intr, ok, ok}} // v4 interrupted; then v4, v6
		n, err := newNetlinkSourceConn(func() (nlConn, error) { return conn, nil }, []int{FamilyIPv4}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var c Counts
		if err := n.count(&c, &c); err != nil {
			t.Fatal(err)
		}
		if c.Total[StateTimeWait] != 2 || n.retries != 1 {
			t.Fatalf("TW %d after %d retries, want 2 after 1 (the interrupted dump discarded)", c.Total[StateTimeWait], n.retries)
		}
	})
	t.Run("always interrupted", func(t *testing.T) {
		conn := &scriptConn{replies: [][][]byte{intr, intr, intr, intr, intr}}
		n, _ := newNetlinkSourceConn(func() (nlConn, error) { return conn, nil }, []int{FamilyIPv4}, nil)
		var c Counts
		if err := n.count(&c, &c); !errors.Is(err, ErrDumpInterrupted) {
			t.Fatalf("err %v, want ErrDumpInterrupted", err)
		}
	})
	t.Run("error reopens the socket", func(t *testing.T) {
		opened := 0
		conns := []*scriptConn{{replies: [][][]byte{{tw(0)}}}, {replies: [][][]byte{ok}}}
		n, _ := newNetlinkSourceConn(func() (nlConn, error) { opened++; return conns[opened-1], nil }, []int{FamilyIPv4}, nil)
		var c Counts
		if err := n.count(&c, &c); !errors.Is(err, ErrNetlink) {
			t.Fatalf("a reply cut short: err %v", err)
		}
		if !conns[0].closed {
			t.Fatal("the socket holding a partial reply was not closed")
		}
		c.reset()
		if err := n.count(&c, &c); err != nil || c.Total[StateTimeWait] != 2 || opened != 2 {
			t.Fatalf("after reopen: err %v TW %d opened %d", err, c.Total[StateTimeWait], opened)
		}
	})
}

func FuzzParseDiagReply(f *testing.F) {
	f.Add(cat(nlMsg(unix.SOCK_DIAG_BY_FAMILY, 2, 1, diagMsg(6, 1, 2, 0)), doneMsg(1, 0, 0)))
	f.Add(nlMsg(unix.NLMSG_ERROR, 0, 1, []byte{0xea, 0xff, 0xff, 0xff}))
	f.Add(doneMsg(1, unix.NLM_F_DUMP_INTR, -5))
	f.Fuzz(func(t *testing.T, b []byte) {
		var c Counts
		parseDiagReply(b, 1, nil, &c)
		if c.Sockets() > uint64(len(b)/(16+sizeofInetDiagMsg)) {
			t.Fatalf("%d sockets from %d bytes", c.Sockets(), len(b))
		}
	})
}

func TestNetlinkCompatRefused(t *testing.T) {
	tw := nlMsg(unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_MULTI, 0, diagMsg(StateTimeWait, 1, 2, 0))
	refused := [][]byte{nlMsg(unix.NLMSG_ERROR, 0, 0, []byte{0xea, 0xff, 0xff, 0xff})} // -EINVAL
	ok := [][]byte{tw, doneMsg(0, 0, 0)}
	conn := &scriptConn{replies: [][][]byte{refused, ok, ok, ok, ok}}
	n, err := newNetlinkSourceConn(func() (nlConn, error) { return conn, nil }, []int{FamilyIPv4, FamilyIPv6}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var c Counts
	if err := n.count(&c, &c); err != nil {
		t.Fatal(err)
	}
	if n.compat != nil || c.Total[StateTimeWait] != 2 || conn.sent != 3 {
		t.Fatalf("after a refused one-walk request: compat %v, TW %d, %d requests", n.compat != nil, c.Total[StateTimeWait], conn.sent)
	}
}

// TestNetlinkOneWalk checks that this kernel takes the one-walk request for
// both families (read-only: it lists this namespace's sockets).
func TestNetlinkOneWalk(t *testing.T) {
	n, err := newNetlinkSource("", []int{FamilyIPv4, FamilyIPv6}, nil)
	if err != nil {
		t.Skipf("sock_diag not available here: %v", err)
	}
	defer n.close()
	var c Counts
	if err := n.count(&c, &c); err != nil {
		t.Fatal(err)
	}
	if n.compat == nil {
		t.Fatal("the kernel refused TCPDIAG_GETSOCK: two walks per count")
	}
}
