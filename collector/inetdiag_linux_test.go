package collector

import (
	"encoding/binary"
	"testing"
)

// TestInetDiagSizes pins the structures to the kernel's sizes
// (include/uapi/linux/inet_diag.h): a wrong size would misread every reply.
func TestInetDiagSizes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want int
	}{
		{"inet_diag_sockid", sizeofInetDiagSockID, 48},
		{"inet_diag_req_v2", sizeofInetDiagReqV2, 56},
		{"inet_diag_req", sizeofInetDiagReq, 60},
		{"inet_diag_msg", sizeofInetDiagMsg, 72},
		{"inet_diag_bc_op", sizeofInetDiagBcOp, 4},
		{"offsetof(inet_diag_msg, idiag_state)", offMsgState, 1},
		{"offsetof(inet_diag_msg, id.idiag_sport)", offMsgSport, 4},
		{"offsetof(inet_diag_msg, id.idiag_dport)", offMsgDport, 6},
		{"offsetof(inet_diag_msg, idiag_inode)", offMsgInode, 68},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %d, want %d", tc.name, tc.got, tc.want)
		}
	}
}

func TestPortBytecode(t *testing.T) {
	for _, ports := range [][]uint16{{8080}, {80, 443}, {1, 2, 3, 4, 5, 65535}} {
		bc := portBytecode(ports)
		if want := 24*len(ports) - 4; len(bc) != want {
			t.Errorf("%v: %d bytes, want %d", ports, len(bc), want)
		}
		in := map[uint16]bool{}
		for _, p := range ports {
			in[p] = true
		}
		for _, l := range []uint16{1, 2, 80, 443, 8080, 9999, 65535} {
			for _, r := range []uint16{0, 3, 443, 8080, 40000} {
				if got, want := runBytecode(bc, l, r), in[l] || in[r]; got != want {
					t.Errorf("%v: local %d remote %d: match %v, want %v", ports, l, r, got, want)
				}
			}
		}
		auditBytecode(t, bc)
	}
}

// auditBytecode applies the kernel's inet_diag_bc_audit rules: every Yes and
// No offset is a multiple of 4, at least the instruction's length, lands
// within the program or 4 bytes past it, and a No that stays inside lands on
// an instruction reachable by Yes steps.
func auditBytecode(t *testing.T, bc []byte) {
	t.Helper()
	validCC := func(cc int) bool {
		l, pos := len(bc), 0
		for l >= 0 {
			if cc > l {
				return false
			}
			if cc == l {
				return true
			}
			yes := int(bc[pos+1])
			if yes < 4 || yes&3 != 0 {
				return false
			}
			l -= yes
			pos += yes
		}
		return false
	}
	l, pos := len(bc), 0
	for l > 0 {
		code, yes := bc[pos], int(bc[pos+1])
		no := int(binary.NativeEndian.Uint16(bc[pos+2:]))
		minLen := 4
		if code == inetDiagBcSEq || code == inetDiagBcDEq {
			minLen = 8
		}
		if no < minLen || no > l+4 || no&3 != 0 {
			t.Fatalf("at %d: no=%d rejected (len %d)", pos, no, l)
		}
		if no < l && !validCC(l-no) {
			t.Fatalf("at %d: no=%d lands between instructions", pos, no)
		}
		if yes < minLen || yes > l+4 || yes&3 != 0 {
			t.Fatalf("at %d: yes=%d rejected", pos, yes)
		}
		pos += yes
		l -= yes
	}
	if l != 0 {
		t.Fatalf("program ends %d bytes off", l)
	}
}

func TestBuildDiagRequest(t *testing.T) {
	req := buildDiagRequest(nil)
	if len(req) != 16+56 || binary.NativeEndian.Uint32(req) != 72 {
		t.Fatalf("request of %d bytes", len(req))
	}
	if binary.NativeEndian.Uint32(req[16+4:]) != allStatesMask || allStatesMask != 0xffe {
		t.Fatalf("state mask %#x", allStatesMask)
	}
	c := buildCompatRequest(nil)
	if len(c) != 16+60 || binary.NativeEndian.Uint16(c[4:]) != tcpDiagGetSock || binary.NativeEndian.Uint32(c[16+52:]) != allStatesMask {
		t.Fatalf("compat request %x", c)
	}
	bc := portBytecode([]uint16{80})
	req = buildDiagRequest(bc)
	if len(req) != 16+56+4+len(bc) || int(binary.NativeEndian.Uint16(req[72:])) != 4+len(bc) {
		t.Fatalf("request with bytecode of %d bytes", len(req))
	}
}
