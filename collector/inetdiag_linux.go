package collector

import (
	"encoding/binary"
	"unsafe"
)

// golang.org/x/sys/unix has the netlink constants but not the inet_diag
// structures (include/uapi/linux/inet_diag.h); they are defined here once,
// and inetdiag_linux_test.go checks their sizes against the kernel's.

// inetDiagSockID is struct inet_diag_sockid (48 bytes). Ports and addresses
// are in network byte order.
type inetDiagSockID struct {
	Sport  [2]byte
	Dport  [2]byte
	Src    [16]byte
	Dst    [16]byte
	If     uint32
	Cookie [2]uint32
}

// inetDiagReqV2 is struct inet_diag_req_v2 (56 bytes), the body of a
// SOCK_DIAG_BY_FAMILY request.
type inetDiagReqV2 struct {
	Family   uint8
	Protocol uint8
	Ext      uint8
	Pad      uint8
	States   uint32
	ID       inetDiagSockID
}

// inetDiagReq is struct inet_diag_req (60 bytes), the older request sent
// with nlmsg_type TCPDIAG_GETSOCK. The kernel dumps it with family
// AF_UNSPEC: one walk of the socket hash answers for IPv4 and IPv6, where
// SOCK_DIAG_BY_FAMILY needs one walk per family.
type inetDiagReq struct {
	Family uint8
	SrcLen uint8
	DstLen uint8
	Ext    uint8
	ID     inetDiagSockID
	States uint32
	DBs    uint32
}

// inetDiagMsg is struct inet_diag_msg (72 bytes), one socket in a reply.
type inetDiagMsg struct {
	Family  uint8
	State   uint8
	Timer   uint8
	Retrans uint8
	ID      inetDiagSockID
	Expires uint32
	Rqueue  uint32
	Wqueue  uint32
	UID     uint32
	Inode   uint32
}

// inetDiagBcOp is struct inet_diag_bc_op (4 bytes), one bytecode instruction:
// after it runs, the program goes on Yes or No bytes further.
type inetDiagBcOp struct {
	Code uint8
	Yes  uint8
	No   uint16
}

const (
	sizeofInetDiagSockID = int(unsafe.Sizeof(inetDiagSockID{}))
	sizeofInetDiagReqV2  = int(unsafe.Sizeof(inetDiagReqV2{}))
	sizeofInetDiagReq    = int(unsafe.Sizeof(inetDiagReq{}))
	sizeofInetDiagMsg    = int(unsafe.Sizeof(inetDiagMsg{}))
	sizeofInetDiagBcOp   = int(unsafe.Sizeof(inetDiagBcOp{}))
)

// Offsets into a reply's inet_diag_msg that the parser reads directly.
var (
	offMsgState = int(unsafe.Offsetof(inetDiagMsg{}.State))
	offMsgSport = int(unsafe.Offsetof(inetDiagMsg{}.ID) + unsafe.Offsetof(inetDiagSockID{}.Sport))
	offMsgDport = int(unsafe.Offsetof(inetDiagMsg{}.ID) + unsafe.Offsetof(inetDiagSockID{}.Dport))
	offMsgInode = int(unsafe.Offsetof(inetDiagMsg{}.Inode))
)

// inet_diag request attributes and bytecode operations.
const (
	tcpDiagGetSock      = 18 // TCPDIAG_GETSOCK: the request and its replies
	inetDiagReqBytecode = 1  // INET_DIAG_REQ_BYTECODE
	inetDiagBcJmp       = 1  // INET_DIAG_BC_JMP
	inetDiagBcSEq       = 11 // INET_DIAG_BC_S_EQ: local port equals
	inetDiagBcDEq       = 12 // INET_DIAG_BC_D_EQ: remote port equals
	// maxBytecodePorts bounds the kernel filter: the program runs for every
	// socket and its attribute length is 16 bits. Beyond it, ports are
	// filtered in user space.
	maxBytecodePorts = 256
)

// portBytecode compiles "local or remote port is one of ports" into
// inet_diag bytecode, the way ss compiles an "or": each comparison is
// followed by a JMP to the end (accept) that a failed comparison skips.
//
// The kernel accepts a socket when the program ends exactly at its end and
// rejects it when a jump lands 4 bytes beyond; its audit requires every jump
// to land on an instruction reached by following Yes offsets, which is why
// Yes always points to the next instruction.
func portBytecode(ports []uint16) []byte {
	type cond struct {
		code uint8
		port uint16
	}
	conds := make([]cond, 0, 2*len(ports))
	for _, p := range ports {
		conds = append(conds, cond{inetDiagBcSEq, p}, cond{inetDiagBcDEq, p})
	}
	total := 12*(len(conds)-1) + 8
	b := make([]byte, 0, total)
	put := func(op inetDiagBcOp) {
		b = append(b, op.Code, op.Yes)
		b = binary.NativeEndian.AppendUint16(b, op.No)
	}
	for i, c := range conds {
		put(inetDiagBcOp{Code: c.code, Yes: 8, No: 12})
		put(inetDiagBcOp{No: c.port}) // operand: the port, host order
		if i < len(conds)-1 {
			rest := total - len(b)
			put(inetDiagBcOp{Code: inetDiagBcJmp, Yes: 4, No: uint16(rest)})
		}
	}
	return b
}

// runBytecode interprets a program the way the kernel's inet_diag_bc_run
// does, for the ops portBytecode emits; tests use it to check the compiler.
func runBytecode(bc []byte, lport, rport uint16) bool {
	pos, n := 0, len(bc)
	for pos < n {
		if pos+4 > n {
			return false
		}
		code, yesOff := bc[pos], int(bc[pos+1])
		noOff := int(binary.NativeEndian.Uint16(bc[pos+2:]))
		yes := true
		switch code {
		case inetDiagBcJmp:
			yes = false
		case inetDiagBcSEq, inetDiagBcDEq:
			if pos+8 > n {
				return false
			}
			port := binary.NativeEndian.Uint16(bc[pos+6:])
			if code == inetDiagBcSEq {
				yes = lport == port
			} else {
				yes = rport == port
			}
		}
		if yes {
			pos += yesOff
		} else {
			pos += noOff
		}
	}
	return pos == n
}
