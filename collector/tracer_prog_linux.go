package collector

import (
	"fmt"

	"github.com/cilium/ebpf/asm"
)

// progBuilder writes the tracer's programs with the asm package. Register
// use across every program: R6 the tracepoint record, R7 the group
// (target*2 + side), R8 the socket address, R9 scratch kept across calls.
// The stack holds map keys and values:
const (
	stkKey   = -8  // u32 array index
	stkSock  = -16 // u64 socket address (hash key)
	stkVal   = -32 // sockEntry: u64 entered ns, u32 state, u32 flags
	stkRead  = -40 // probe_read destination
	stkNow   = -48 // u64 now
	stkFlags = -52 // u32 flags of the socket's entry
)

// sockEntry flag: the socket sent or received a reset, so its move to
// CLOSE is an abort, not a hand-over to a timewait mini-socket.
const sockFlagReset = 1

type progBuilder struct {
	ins      asm.Instructions
	n        int
	counters int // map fds
	dwell    int
	socks    int
	closed   int // LRU hash: socket address -> state it left for CLOSE
	off      kernelOffsets
	netns    uint32
	targets  []TracerTarget
}

func (p *progBuilder) label(prefix string) string {
	p.n++
	return fmt.Sprintf("%s_%d", prefix, p.n)
}

func (p *progBuilder) emit(ins ...asm.Instruction) { p.ins = append(p.ins, ins...) }

// addOne adds 1 to u64 element idxReg of the array map fd; idxReg is
// clobbered along with R0-R5.
func (p *progBuilder) addOne(fd int, idxReg asm.Register) {
	skip := p.label("skip")
	p.emit(
		asm.StoreMem(asm.RFP, stkKey, idxReg, asm.Word),
		asm.LoadMapPtr(asm.R1, fd),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stkKey),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, skip),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol(skip),
	)
}

// matchPorts sets R7 to the group of a socket with local port in lport and
// remote port in rport (registers, host order), or jumps to exit: a local
// target port is the target side, a remote one the client side.
func (p *progBuilder) matchPorts(lport, rport asm.Register) {
	found := p.label("found")
	for i, t := range p.targets {
		next := p.label("nextl")
		p.emit(
			asm.JNE.Imm(lport, int32(t.Port), next),
			asm.Mov.Imm(asm.R7, int32(i*tracerSides+1)),
			asm.Ja.Label(found),
			asm.Mov.Imm(asm.R0, 0).WithSymbol(next),
		)
	}
	for i, t := range p.targets {
		next := p.label("nextr")
		p.emit(
			asm.JNE.Imm(rport, int32(t.Port), next),
			asm.Mov.Imm(asm.R7, int32(i*tracerSides)),
			asm.Ja.Label(found),
			asm.Mov.Imm(asm.R0, 0).WithSymbol(next),
		)
	}
	p.emit(
		asm.Ja.Label("exit"),
		asm.Mov.Imm(asm.R0, 0).WithSymbol(found),
	)
}

// readKernel reads size bytes at src+off (src a register holding a kernel
// pointer) into the stack slot stkRead, or jumps to exit.
func (p *progBuilder) readKernel(src asm.Register, off uint32, size int32) {
	p.emit(
		asm.Mov.Reg(asm.R3, src),
		asm.Add.Imm(asm.R3, int32(off)),
		asm.Mov.Reg(asm.R1, asm.RFP),
		asm.Add.Imm(asm.R1, stkRead),
		asm.Mov.Imm(asm.R2, size),
		asm.FnProbeReadKernel.Call(),
		asm.JNE.Imm(asm.R0, 0, "exit"),
	)
}

// checkNetnsOfNet jumps to exit unless the struct net * in R9 is the
// followed namespace.
func (p *progBuilder) checkNetnsOfNet() {
	p.readKernel(asm.R9, p.off.netInum, 4)
	p.emit(
		asm.LoadMem(asm.R1, asm.RFP, stkRead, asm.Word),
		asm.JNE.Imm32(asm.R1, int32(p.netns), "exit"),
	)
}

// checkNetnsOfSock jumps to exit unless the socket in R8 lives in the
// followed namespace.
func (p *progBuilder) checkNetnsOfSock() {
	p.readKernel(asm.R8, p.off.skNet, 8)
	p.emit(asm.LoadMem(asm.R9, asm.RFP, stkRead, asm.DWord))
	p.checkNetnsOfNet()
}

// markReset flags the socket in R8's entry, when it has one.
func (p *progBuilder) markReset() {
	skip := p.label("nomark")
	p.emit(
		asm.StoreMem(asm.RFP, stkSock, asm.R8, asm.DWord),
		asm.LoadMapPtr(asm.R1, p.socks),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stkSock),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, skip),
		asm.StoreImm(asm.R0, 12, sockFlagReset, asm.Word),
		asm.Mov.Imm(asm.R0, 0).WithSymbol(skip),
	)
}

func (p *progBuilder) exit() asm.Instructions {
	p.emit(
		asm.Mov.Imm(asm.R0, 0).WithSymbol("exit"),
		asm.Return(),
	)
	return p.ins
}

// setStateFields are the offsets in sock:inet_sock_set_state's record.
type setStateFields struct{ skaddr, oldstate, newstate, sport, dport, protocol int16 }

// buildSetState counts the transition, folds the time spent in the old
// state into its dwell histogram, counts hand-overs to timewait sockets and
// keeps the per-socket entry (deleted when the socket reaches CLOSE).
func (p *progBuilder) buildSetState(f setStateFields) asm.Instructions {
	p.emit(
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R1, asm.R6, f.protocol, asm.Half),
		asm.JNE.Imm(asm.R1, 6, "exit"), // IPPROTO_TCP
		asm.LoadMem(asm.R1, asm.R6, f.sport, asm.Half),
		asm.LoadMem(asm.R2, asm.R6, f.dport, asm.Half),
	)
	p.matchPorts(asm.R1, asm.R2)
	p.emit(asm.LoadMem(asm.R8, asm.R6, f.skaddr, asm.DWord))
	p.checkNetnsOfSock()
	p.emit(
		// R9 = old*16 + new
		asm.LoadMem(asm.R9, asm.R6, f.oldstate, asm.Word),
		asm.And.Imm(asm.R9, 15),
		asm.LSh.Imm(asm.R9, 4),
		asm.LoadMem(asm.R1, asm.R6, f.newstate, asm.Word),
		asm.And.Imm(asm.R1, 15),
		asm.Or.Reg(asm.R9, asm.R1),
		// transitions[g*256 + old*16 + new]++
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.LSh.Imm(asm.R1, 8),
		asm.Add.Reg(asm.R1, asm.R9),
		asm.Add.Imm(asm.R1, ctrTransitions),
	)
	p.addOne(p.counters, asm.R1)
	p.emit(
		// tcp_set_state to the state a socket is already in (a second close
		// of a FIN_WAIT2 socket) is counted but leaves its entry time alone.
		asm.Mov.Reg(asm.R1, asm.R9),
		asm.RSh.Imm(asm.R1, 4),
		asm.Mov.Reg(asm.R2, asm.R9),
		asm.And.Imm(asm.R2, 15),
		asm.JEq.Reg(asm.R1, asm.R2, "exit"),
		// Remember which socket just moved to CLOSE and from where: an
		// abortive close (tcp_disconnect, tcp_close with unread data) sends
		// its RST right after, and the reset counts under the state the
		// connection was in. Keyed by socket, because on loopback the RST
		// reaches the peer (and its own move to CLOSE) before the sender's
		// tcp_send_reset fires; an LRU map forgets the closes no reset
		// followed.
		asm.JNE.Imm(asm.R2, StateClose, "notclosed"),
		asm.StoreMem(asm.RFP, stkSock, asm.R8, asm.DWord),
		asm.StoreMem(asm.RFP, stkVal, asm.R1, asm.DWord),
		asm.LoadMapPtr(asm.R1, p.closed),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stkSock),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, stkVal),
		asm.Mov.Imm(asm.R4, 0), // BPF_ANY
		asm.FnMapUpdateElem.Call(),
		asm.FnKtimeGetNs.Call().WithSymbol("notclosed"),
		asm.StoreMem(asm.RFP, stkNow, asm.R0, asm.DWord),
		asm.StoreImm(asm.RFP, stkFlags, 0, asm.Word),
		asm.StoreMem(asm.RFP, stkSock, asm.R8, asm.DWord),
		asm.LoadMapPtr(asm.R1, p.socks),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stkSock),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "noentry"),
		// An entry for another state is stale (an address reused without
		// a CLOSE seen): no dwell from it.
		asm.LoadMem(asm.R1, asm.R0, 8, asm.Word),
		asm.Mov.Reg(asm.R2, asm.R9),
		asm.RSh.Imm(asm.R2, 4),
		asm.JNE.Reg(asm.R1, asm.R2, "noentry"),
		asm.LoadMem(asm.R1, asm.R0, 12, asm.Word),
		asm.StoreMem(asm.RFP, stkFlags, asm.R1, asm.Word),
		// R4 = dwell = now - entered
		asm.LoadMem(asm.R4, asm.RFP, stkNow, asm.DWord),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Sub.Reg(asm.R4, asm.R1),
	)
	p.dwellBucket() // R1 = bucket of R4
	p.emit(
		// dwell[((g*16 + old) * dwellBuckets) + bucket]++
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.LSh.Imm(asm.R2, 4),
		asm.Mov.Reg(asm.R3, asm.R9),
		asm.RSh.Imm(asm.R3, 4),
		asm.Add.Reg(asm.R2, asm.R3),
		asm.Mul.Imm(asm.R2, dwellBuckets),
		asm.Add.Reg(asm.R1, asm.R2),
	)
	p.addOne(p.dwell, asm.R1)
	p.emit(
		asm.Mov.Imm(asm.R0, 0).WithSymbol("noentry"),
		// A move from FIN_WAIT2 or CLOSING to CLOSE without a reset is the
		// hand-over to a timewait mini-socket (tcp_time_wait -> tcp_done).
		asm.Mov.Reg(asm.R1, asm.R9),
		asm.And.Imm(asm.R1, 15),
		asm.JNE.Imm(asm.R1, StateClose, "store"),
		asm.LoadMem(asm.R1, asm.RFP, stkFlags, asm.Word),
		asm.JNE.Imm(asm.R1, 0, "delete"),
		asm.Mov.Reg(asm.R1, asm.R9),
		asm.RSh.Imm(asm.R1, 4),
		asm.JEq.Imm(asm.R1, StateFinWait2, "handover"),
		asm.JEq.Imm(asm.R1, StateClosing, "handover"),
		asm.Ja.Label("delete"),
		asm.Mov.Reg(asm.R2, asm.R7).WithSymbol("handover"),
		asm.LSh.Imm(asm.R2, 4),
		asm.Add.Reg(asm.R1, asm.R2),
		asm.Add.Imm(asm.R1, ctrHandovers),
	)
	p.addOne(p.counters, asm.R1)
	p.emit(
		asm.LoadMapPtr(asm.R1, p.socks).WithSymbol("delete"),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stkSock),
		asm.FnMapDeleteElem.Call(),
		asm.Ja.Label("exit"),

		asm.LoadMem(asm.R1, asm.RFP, stkNow, asm.DWord).WithSymbol("store"),
		asm.StoreMem(asm.RFP, stkVal, asm.R1, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.R9),
		asm.And.Imm(asm.R1, 15),
		asm.StoreMem(asm.RFP, stkVal+8, asm.R1, asm.Word),
		asm.LoadMem(asm.R1, asm.RFP, stkFlags, asm.Word),
		asm.StoreMem(asm.RFP, stkVal+12, asm.R1, asm.Word),
		asm.LoadMapPtr(asm.R1, p.socks),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stkSock),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, stkVal),
		asm.Mov.Imm(asm.R4, 0), // BPF_ANY
		asm.FnMapUpdateElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "exit"),
		asm.Mov.Imm(asm.R1, ctrUntracked),
	)
	p.addOne(p.counters, asm.R1)
	return p.exit()
}

// dwellBucket computes in R1 the log-linear bucket of the value in R4 (see
// dwellBucketOf), using R2, R3 and R5.
func (p *progBuilder) dwellBucket() {
	done := p.label("bdone")
	p.emit(
		asm.Mov.Imm(asm.R2, 0), // highest set bit
		asm.Mov.Reg(asm.R3, asm.R4),
	)
	for _, sh := range []int32{32, 16, 8, 4, 2, 1} {
		next := p.label("msb")
		p.emit(
			asm.Mov.Reg(asm.R5, asm.R3),
			asm.RSh.Imm(asm.R5, sh),
			asm.JEq.Imm(asm.R5, 0, next),
			asm.Add.Imm(asm.R2, sh),
			asm.Mov.Reg(asm.R3, asm.R5),
			asm.Mov.Imm(asm.R0, 0).WithSymbol(next),
		)
	}
	small := p.label("bsmall")
	p.emit(
		asm.JLT.Imm(asm.R2, dwellSubBits, small),
		asm.Mov.Imm(asm.R1, dwellBuckets-1),
		asm.JGT.Imm(asm.R2, dwellMaxBit, done),
		asm.Sub.Imm(asm.R2, dwellSubBits),
		asm.Mov.Reg(asm.R1, asm.R4),
		asm.RSh.Reg(asm.R1, asm.R2),
		asm.LSh.Imm(asm.R2, 4),
		asm.Add.Reg(asm.R1, asm.R2),
		asm.Ja.Label(done),
		asm.Mov.Reg(asm.R1, asm.R4).WithSymbol(small),
		asm.Mov.Imm(asm.R0, 0).WithSymbol(done),
	)
}

// sendResetFields are the offsets in tcp:tcp_send_reset's record.
type sendResetFields struct{ skbaddr, skaddr, state, reason, saddr, daddr int16 }

// buildSendReset counts a sent RST by group, state and reason. Addresses
// are sockaddr_in/in6 with the port in network order; saddr is the side
// sending the reset. Without a socket (NO_SOCKET) the namespace is the
// receiving device's.
func (p *progBuilder) buildSendReset(f sendResetFields) asm.Instructions {
	p.emit(
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R1, asm.R6, f.saddr+2, asm.Half),
		asm.HostTo(asm.BE, asm.R1, asm.Half),
		asm.LoadMem(asm.R2, asm.R6, f.daddr+2, asm.Half),
		asm.HostTo(asm.BE, asm.R2, asm.Half),
	)
	p.matchPorts(asm.R1, asm.R2)
	p.emit(
		asm.LoadMem(asm.R8, asm.R6, f.skaddr, asm.DWord),
		asm.JEq.Imm(asm.R8, 0, "nosock"),
	)
	p.checkNetnsOfSock()
	p.emit(asm.Ja.Label("counted"))
	p.emit(asm.LoadMem(asm.R9, asm.R6, f.skbaddr, asm.DWord).WithSymbol("nosock"))
	if p.off.haveSkbDev {
		p.emit(asm.JEq.Imm(asm.R9, 0, "exit"))
		p.readKernel(asm.R9, p.off.skbDev, 8)
		p.emit(asm.LoadMem(asm.R9, asm.RFP, stkRead, asm.DWord), asm.JEq.Imm(asm.R9, 0, "exit"))
		p.readKernel(asm.R9, p.off.devNet, 8)
		p.emit(asm.LoadMem(asm.R9, asm.RFP, stkRead, asm.DWord))
		p.checkNetnsOfNet()
	} else {
		p.emit(asm.Ja.Label("exit"))
	}
	p.emit(
		asm.LoadMem(asm.R1, asm.R6, f.state, asm.Word).WithSymbol("counted"),
		asm.And.Imm(asm.R1, 15),
		// A socket that just moved to CLOSE counts under the state it left.
		asm.JNE.Imm(asm.R1, StateClose, "rststate"),
		asm.JEq.Imm(asm.R8, 0, "rststate"),
		asm.StoreMem(asm.RFP, stkFlags, asm.R1, asm.Word),
		asm.StoreMem(asm.RFP, stkSock, asm.R8, asm.DWord),
		asm.LoadMapPtr(asm.R1, p.closed),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stkSock),
		asm.FnMapLookupElem.Call(),
		asm.LoadMem(asm.R1, asm.RFP, stkFlags, asm.Word),
		asm.JEq.Imm(asm.R0, 0, "rststate"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.Word),
		asm.And.Imm(asm.R1, 15),
		asm.Mov.Reg(asm.R2, asm.R7).WithSymbol("rststate"),
		asm.LSh.Imm(asm.R2, 4),
		asm.Add.Reg(asm.R1, asm.R2),
		asm.Add.Imm(asm.R1, ctrResetsSent),
	)
	p.addOne(p.counters, asm.R1)
	p.emit(
		asm.LoadMem(asm.R1, asm.R6, f.reason, asm.Word),
		asm.JLT.Imm(asm.R1, tracerReasons, "reasonok"),
		asm.Mov.Imm(asm.R1, tracerReasons-1),
		asm.Mov.Reg(asm.R2, asm.R7).WithSymbol("reasonok"),
		asm.LSh.Imm(asm.R2, 5),
		asm.Add.Reg(asm.R1, asm.R2),
		asm.Add.Imm(asm.R1, ctrReasons),
	)
	p.addOne(p.counters, asm.R1)
	p.emit(asm.JEq.Imm(asm.R8, 0, "exit"))
	p.markReset()
	return p.exit()
}

// receiveResetFields are the offsets in tcp:tcp_receive_reset's record.
type receiveResetFields struct{ skaddr, sport, dport int16 }

// buildReceiveReset counts a received RST by group and the socket's state.
func (p *progBuilder) buildReceiveReset(f receiveResetFields) asm.Instructions {
	p.emit(
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R1, asm.R6, f.sport, asm.Half),
		asm.LoadMem(asm.R2, asm.R6, f.dport, asm.Half),
	)
	p.matchPorts(asm.R1, asm.R2)
	p.emit(
		asm.LoadMem(asm.R8, asm.R6, f.skaddr, asm.DWord),
		asm.JEq.Imm(asm.R8, 0, "exit"),
	)
	p.checkNetnsOfSock()
	p.readKernel(asm.R8, p.off.skState, 1)
	p.emit(
		asm.LoadMem(asm.R1, asm.RFP, stkRead, asm.Byte),
		asm.And.Imm(asm.R1, 15),
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.LSh.Imm(asm.R2, 4),
		asm.Add.Reg(asm.R1, asm.R2),
		asm.Add.Imm(asm.R1, ctrResetsRecv),
	)
	p.addOne(p.counters, asm.R1)
	p.markReset()
	return p.exit()
}
