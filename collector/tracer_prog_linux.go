package collector

import (
	"fmt"

	"github.com/cilium/ebpf/asm"
)

// progBuilder writes the tracer's programs with the asm package. They are
// BTF-typed tracepoint programs: R1 is the array of the tracepoint's own
// arguments (u64 each), pointers among them are typed by the kernel's BTF,
// and the verifier lets the programs load struct fields through them
// directly. Register use across every program: R6 the socket's storage (or
// the tracepoint arguments), R7 the group (target*2 + side), R8 the socket,
// R9 scratch kept across calls. The stack holds:
const (
	stkKey   = -8  // u32 array index
	stkCtr   = -16 // u64 first counter of this CPU's slot
	stkDwell = -24 // u64 first dwell bucket of this CPU's slot
	stkNow   = -32 // u64 now
	stkRead  = -40 // probe_read destination
	stkSock  = -48 // u64 socket address (the socket table's key)
	stkVal   = -64 // a new entry of the socket table
)

// The socket table maps a socket's address to the time it entered its
// state, the state, and flags. It is an LRU hash: a socket's entry stays
// after its move to CLOSE (the RST of an abortive close comes after it) and
// goes when the table needs room, and an entry whose state is not the one a
// transition leaves is stale (its address reused, or a transition missed)
// and starts afresh.
const (
	sockEntered = 0  // u64 ns
	sockState   = 8  // u32
	sockFlags   = 12 // u32: sockFlagReset | closed-from state << 8
	sockSize    = 16
)

// sockFlagReset: the socket sent or received a reset, so its move to CLOSE
// is an abort, not a hand-over to a timewait mini-socket. sockFlagClosed:
// bits 8-11 hold the state the socket left for CLOSE, under which the RST
// of an abortive close (sent just after) counts.
const (
	sockFlagReset  = 1
	sockFlagClosed = 2
)

type progBuilder struct {
	ins      asm.Instructions
	n        int
	counters int // map fds
	dwell    int
	socks    int // the socket table
	tws      int // the timewait table
	// twHandler is the address of tw_timer_handler, the function of every
	// timewait mini-socket's timer.
	twHandler uint64
	slots     int // per-CPU slots of the counter and dwell arrays
	dwellLen  int // dwell buckets in one slot
	off       kernelOffsets
	netns     uint32
	targets   []TracerTarget
}

func (p *progBuilder) label(prefix string) string {
	p.n++
	return fmt.Sprintf("%s_%d", prefix, p.n)
}

func (p *progBuilder) emit(ins ...asm.Instruction) { p.ins = append(p.ins, ins...) }

// slot stores, on the stack, where this CPU's counters and dwell buckets
// start: each CPU adds to a slot of its own (CPU number modulo the slots),
// so the counters' cache lines do not bounce between CPUs. User space sums
// the slots. Clobbers R0-R5.
func (p *progBuilder) slot() {
	p.emit(
		asm.FnGetSmpProcessorId.Call(),
		asm.Mod.Imm(asm.R0, int32(p.slots)),
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.Mul.Imm(asm.R1, ctrCount),
		asm.StoreMem(asm.RFP, stkCtr, asm.R1, asm.DWord),
		asm.Mul.Imm(asm.R0, int32(p.dwellLen)),
		asm.StoreMem(asm.RFP, stkDwell, asm.R0, asm.DWord),
	)
}

// addOne adds 1 to u64 element idxReg of this CPU's slot of the array map
// fd (base the stack slot holding the slot's start); idxReg is clobbered
// along with R0-R5. The add is atomic: another program may interrupt this
// one on the same CPU.
func (p *progBuilder) addOne(fd int, base int16, idxReg asm.Register) {
	skip := p.label("skip")
	p.emit(
		asm.LoadMem(asm.R2, asm.RFP, base, asm.DWord),
		asm.Add.Reg(idxReg, asm.R2),
		asm.StoreMem(asm.RFP, stkKey, idxReg, asm.Word),
	)
	p.mapCall(asm.FnMapLookupElem, fd, stkKey, 0)
	p.emit(
		asm.JEq.Imm(asm.R0, 0, skip),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol(skip),
	)
}

// mapCall calls a map helper on map fd with the key at the stack offset
// key and, for an update (BPF_ANY), the value at val; for a lookup R0 is
// the value or 0. Clobbers R0-R5.
func (p *progBuilder) mapCall(fn asm.BuiltinFunc, fd int, key, val int16) {
	p.emit(
		asm.LoadMapPtr(asm.R1, fd),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, int32(key)),
	)
	if fn == asm.FnMapUpdateElem {
		p.emit(
			asm.Mov.Reg(asm.R3, asm.RFP),
			asm.Add.Imm(asm.R3, int32(val)),
			asm.Mov.Imm(asm.R4, 0), // BPF_ANY
		)
	}
	p.emit(fn.Call())
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

// matchSock sets R7 to the group of the socket in R8 (any struct
// sock_common: full, request or timewait socket) by its ports, or jumps to
// exit. A full socket moving to CLOSE has already given its port back
// (inet_put_port zeroes skc_num); its inet_sport still holds the port.
func (p *progBuilder) matchSock() {
	have := p.label("lport")
	p.emit(
		asm.LoadMem(asm.R1, asm.R8, int16(p.off.skcNum), asm.Half),
		asm.JNE.Imm(asm.R1, 0, have),
	)
	p.probeRead(stkRead, asm.R8, p.off.inetSport, 2)
	p.emit(
		asm.LoadMem(asm.R1, asm.RFP, stkRead, asm.Half),
		asm.HostTo(asm.BE, asm.R1, asm.Half),
		asm.LoadMem(asm.R2, asm.R8, int16(p.off.skcDport), asm.Half).WithSymbol(have),
		asm.HostTo(asm.BE, asm.R2, asm.Half),
	)
	p.matchPorts(asm.R1, asm.R2)
}

// checkNetnsOfNet jumps to exit unless the struct net * in R1 is the
// followed namespace.
func (p *progBuilder) checkNetnsOfNet() {
	p.emit(
		asm.JEq.Imm(asm.R1, 0, "exit"),
		asm.LoadMem(asm.R1, asm.R1, int16(p.off.netInum), asm.Word),
		asm.JNE.Imm32(asm.R1, int32(p.netns), "exit"),
	)
}

// checkNetnsOfSock jumps to exit unless the socket in R8 lives in the
// followed namespace.
func (p *progBuilder) checkNetnsOfSock() {
	p.emit(asm.LoadMem(asm.R1, asm.R8, int16(p.off.skcNet), asm.DWord))
	p.checkNetnsOfNet()
}

// entry sets R6 to the socket's entry in the socket table (keyed by the
// address of the socket in R8), or to 0. With create, a missing entry is
// added zeroed (state 0: no dwell from it) and R6 is 0 only when the table
// refused it. Clobbers R0-R5.
func (p *progBuilder) entry(create bool) {
	done := p.label("entry")
	p.emit(
		asm.StoreMem(asm.RFP, stkSock, asm.R8, asm.DWord),
	)
	p.mapCall(asm.FnMapLookupElem, p.socks, stkSock, 0)
	p.emit(
		asm.Mov.Reg(asm.R6, asm.R0),
	)
	if !create {
		return
	}
	p.emit(
		asm.JNE.Imm(asm.R6, 0, done),
		asm.Mov.Imm(asm.R1, 0),
		asm.StoreMem(asm.RFP, stkVal, asm.R1, asm.DWord),
		asm.StoreMem(asm.RFP, stkVal+8, asm.R1, asm.DWord),
	)
	p.mapCall(asm.FnMapUpdateElem, p.socks, stkSock, stkVal)
	p.emit(
		asm.JNE.Imm(asm.R0, 0, done),
	)
	p.mapCall(asm.FnMapLookupElem, p.socks, stkSock, 0)
	p.emit(
		asm.Mov.Reg(asm.R6, asm.R0),
		asm.Mov.Imm(asm.R0, 0).WithSymbol(done),
	)
}

// markReset flags the storage in R6, when there is one.
func (p *progBuilder) markReset() {
	p.emit(
		asm.JEq.Imm(asm.R6, 0, "exit"),
		asm.LoadMem(asm.R1, asm.R6, sockFlags, asm.Word),
		asm.Or.Imm(asm.R1, sockFlagReset),
		asm.StoreMem(asm.R6, sockFlags, asm.R1, asm.Word),
	)
}

func (p *progBuilder) exit() asm.Instructions {
	p.emit(
		asm.Mov.Imm(asm.R0, 0).WithSymbol("exit"),
		asm.Return(),
	)
	return p.ins
}

// buildSetState, on sock:inet_sock_set_state(sk, oldstate, newstate),
// counts the transition, folds the time spent in the old state into its
// dwell histogram, counts hand-overs to timewait sockets and keeps the
// socket's entry time and state in its storage.
func (p *progBuilder) buildSetState() asm.Instructions {
	p.emit(
		asm.LoadMem(asm.R8, asm.R1, 0, asm.DWord),
		// R9 = old*16 + new
		asm.LoadMem(asm.R9, asm.R1, 8, asm.DWord),
		asm.And.Imm(asm.R9, 15),
		asm.LSh.Imm(asm.R9, 4),
		asm.LoadMem(asm.R2, asm.R1, 16, asm.DWord),
		asm.And.Imm(asm.R2, 15),
		asm.Or.Reg(asm.R9, asm.R2),
		asm.JEq.Imm(asm.R8, 0, "exit"),
		asm.LoadMem(asm.R1, asm.R8, int16(p.off.skProtocol), asm.Half),
		asm.JNE.Imm(asm.R1, 6, "exit"), // IPPROTO_TCP
	)
	p.matchSock()
	p.checkNetnsOfSock()
	p.slot()
	p.emit(
		// transitions[g*256 + old*16 + new]++
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.LSh.Imm(asm.R1, 8),
		asm.Add.Reg(asm.R1, asm.R9),
		asm.Add.Imm(asm.R1, ctrTransitions),
	)
	p.addOne(p.counters, stkCtr, asm.R1)
	p.emit(
		// tcp_set_state to the state a socket is already in (a second close
		// of a FIN_WAIT2 socket) is counted but leaves its entry time alone.
		asm.Mov.Reg(asm.R1, asm.R9),
		asm.RSh.Imm(asm.R1, 4),
		asm.Mov.Reg(asm.R2, asm.R9),
		asm.And.Imm(asm.R2, 15),
		asm.JEq.Reg(asm.R1, asm.R2, "exit"),
	)
	p.entry(true)
	p.emit(
		asm.JNE.Imm(asm.R6, 0, "stored"),
		asm.Mov.Imm(asm.R1, ctrUntracked),
	)
	p.addOne(p.counters, stkCtr, asm.R1)
	p.emit(
		asm.Ja.Label("exit"),
		asm.FnKtimeGetNs.Call().WithSymbol("stored"),
		asm.StoreMem(asm.RFP, stkNow, asm.R0, asm.DWord),
		// An entry in another state than the one left is stale (an address
		// reused, a transition missed), and a socket leaving CLOSE starts
		// afresh (a new socket, a connect after a failed one or after
		// tcp_disconnect): no dwell, no flags.
		asm.Mov.Reg(asm.R2, asm.R9),
		asm.RSh.Imm(asm.R2, 4),
		asm.JEq.Imm(asm.R2, StateClose, "fresh"),
		asm.LoadMem(asm.R1, asm.R6, sockState, asm.Word),
		asm.JNE.Reg(asm.R1, asm.R2, "fresh"),
		asm.LoadMem(asm.R1, asm.R6, sockEntered, asm.DWord),
		asm.JEq.Imm(asm.R1, 0, "nodwell"),
		// R4 = dwell = now - entered
		asm.Mov.Reg(asm.R4, asm.R0),
		asm.Sub.Reg(asm.R4, asm.R1),
	)
	p.dwellBucket() // R1 = bucket of R4
	p.emit(
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.Mov.Reg(asm.R3, asm.R9),
		asm.RSh.Imm(asm.R3, 4), // the state left
	)
	p.addDwell()
	p.emit(
		asm.Ja.Label("nodwell"),
		asm.StoreImm(asm.R6, sockFlags, 0, asm.Word).WithSymbol("fresh"),
		// entered, state = now, new
		asm.LoadMem(asm.R1, asm.RFP, stkNow, asm.DWord).WithSymbol("nodwell"),
		asm.StoreMem(asm.R6, sockEntered, asm.R1, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.R9),
		asm.And.Imm(asm.R1, 15),
		asm.StoreMem(asm.R6, sockState, asm.R1, asm.Word),
		asm.JNE.Imm(asm.R1, StateClose, "exit"),
		// Moving to CLOSE: remember the state left, under which the RST of
		// an abortive close (tcp_disconnect, tcp_close with unread data,
		// sent right after) counts.
		asm.Mov.Reg(asm.R1, asm.R9),
		asm.RSh.Imm(asm.R1, 4),
		asm.Mov.Reg(asm.R2, asm.R1),
		asm.LSh.Imm(asm.R2, 8),
		asm.Or.Imm(asm.R2, sockFlagClosed),
		asm.LoadMem(asm.R3, asm.R6, sockFlags, asm.Word),
		asm.And.Imm(asm.R3, sockFlagReset),
		asm.Or.Reg(asm.R2, asm.R3),
		asm.StoreMem(asm.R6, sockFlags, asm.R2, asm.Word),
		// A move from FIN_WAIT2 or CLOSING to CLOSE without a reset is the
		// hand-over to a timewait mini-socket (tcp_time_wait -> tcp_done).
		asm.JNE.Imm(asm.R3, 0, "exit"),
		asm.JEq.Imm(asm.R1, StateFinWait2, "handover"),
		asm.JNE.Imm(asm.R1, StateClosing, "exit"),
		asm.Mov.Reg(asm.R2, asm.R7).WithSymbol("handover"),
		asm.LSh.Imm(asm.R2, 4),
		asm.Add.Reg(asm.R1, asm.R2),
		asm.Add.Imm(asm.R1, ctrHandovers),
	)
	p.addOne(p.counters, stkCtr, asm.R1)
	return p.exit()
}

// addDwell adds one to bucket R1 of the dwell histogram of group R2 and
// state R3: dwell[((group*16 + state) * dwellBuckets) + bucket]++.
func (p *progBuilder) addDwell() {
	p.emit(
		asm.LSh.Imm(asm.R2, 4),
		asm.Add.Reg(asm.R2, asm.R3),
		asm.Mul.Imm(asm.R2, dwellBuckets),
		asm.Add.Reg(asm.R1, asm.R2),
	)
	p.addOne(p.dwell, stkDwell, asm.R1)
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

// buildSendReset, on tcp:tcp_send_reset(sk, skb, reason), counts a sent RST
// by group, state and reason. With a socket (full, request or timewait),
// its ports and namespace say whose it is; without one (NO_SOCKET) the
// TCP header of the segment it answers gives the ports, reversed, and the
// receiving device the namespace.
func (p *progBuilder) buildSendReset() asm.Instructions {
	p.emit(
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R8, asm.R6, 0, asm.DWord),
		asm.JEq.Imm(asm.R8, 0, "nosock"),
	)
	p.matchSock()
	p.checkNetnsOfSock()
	p.emit(
		asm.LoadMem(asm.R9, asm.R8, int16(p.off.skcState), asm.Byte),
		asm.Ja.Label("counted"),
	)
	if p.off.haveSkbDev {
		p.emit(
			asm.LoadMem(asm.R9, asm.R6, 8, asm.DWord).WithSymbol("nosock"),
			asm.JEq.Imm(asm.R9, 0, "exit"),
			// th = skb->data: source and destination ports, network order
			asm.LoadMem(asm.R3, asm.R9, int16(p.off.skbData), asm.DWord),
			asm.Mov.Reg(asm.R1, asm.RFP),
			asm.Add.Imm(asm.R1, stkRead),
			asm.Mov.Imm(asm.R2, 4),
			asm.FnProbeReadKernel.Call(),
			asm.JNE.Imm(asm.R0, 0, "exit"),
			asm.LoadMem(asm.R1, asm.RFP, stkRead+2, asm.Half), // dest: the resetting side's
			asm.HostTo(asm.BE, asm.R1, asm.Half),
			asm.LoadMem(asm.R2, asm.RFP, stkRead, asm.Half),
			asm.HostTo(asm.BE, asm.R2, asm.Half),
		)
		p.matchPorts(asm.R1, asm.R2)
		p.emit(
			asm.LoadMem(asm.R1, asm.R9, int16(p.off.skbDev), asm.DWord),
			asm.JEq.Imm(asm.R1, 0, "exit"),
			asm.LoadMem(asm.R1, asm.R1, int16(p.off.devNet), asm.DWord),
		)
		p.checkNetnsOfNet()
		p.emit(asm.Mov.Imm(asm.R9, 0)) // no socket: state unknown
	} else {
		p.emit(asm.Ja.Label("exit").WithSymbol("nosock"))
	}
	p.emit(asm.Mov.Imm(asm.R0, 0).WithSymbol("counted"))
	p.slot()
	p.emit(
		asm.LoadMem(asm.R1, asm.R6, 16, asm.DWord), // reason
		asm.StoreMem(asm.RFP, stkNow, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R6, 0),
		asm.And.Imm(asm.R9, 15),
		asm.JEq.Imm(asm.R8, 0, "rststate"),
	)
	p.entry(false)
	p.emit(
		// A socket that just moved to CLOSE counts under the state it left.
		asm.JNE.Imm(asm.R9, StateClose, "rststate"),
		asm.JEq.Imm(asm.R6, 0, "rststate"),
		asm.LoadMem(asm.R1, asm.R6, sockFlags, asm.Word),
		asm.Mov.Reg(asm.R2, asm.R1),
		asm.And.Imm(asm.R2, sockFlagClosed),
		asm.JEq.Imm(asm.R2, 0, "rststate"),
		asm.RSh.Imm(asm.R1, 8),
		asm.And.Imm(asm.R1, 15),
		asm.Mov.Reg(asm.R9, asm.R1),
		asm.Mov.Reg(asm.R1, asm.R7).WithSymbol("rststate"),
		asm.LSh.Imm(asm.R1, 4),
		asm.Add.Reg(asm.R1, asm.R9),
		asm.Add.Imm(asm.R1, ctrResetsSent),
	)
	p.addOne(p.counters, stkCtr, asm.R1)
	p.emit(
		asm.LoadMem(asm.R1, asm.RFP, stkNow, asm.DWord),
		asm.JLT.Imm(asm.R1, tracerReasons, "reasonok"),
		asm.Mov.Imm(asm.R1, tracerReasons-1),
		asm.Mov.Reg(asm.R2, asm.R7).WithSymbol("reasonok"),
		asm.LSh.Imm(asm.R2, 5),
		asm.Add.Reg(asm.R1, asm.R2),
		asm.Add.Imm(asm.R1, ctrReasons),
	)
	p.addOne(p.counters, stkCtr, asm.R1)
	p.markReset()
	return p.exit()
}

// buildReceiveReset, on tcp:tcp_receive_reset(sk), counts a received RST by
// group and the socket's state.
func (p *progBuilder) buildReceiveReset() asm.Instructions {
	p.emit(
		asm.LoadMem(asm.R8, asm.R1, 0, asm.DWord),
		asm.JEq.Imm(asm.R8, 0, "exit"),
	)
	p.matchSock()
	p.checkNetnsOfSock()
	p.slot()
	p.emit(
		asm.LoadMem(asm.R1, asm.R8, int16(p.off.skcState), asm.Byte),
		asm.And.Imm(asm.R1, 15),
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.LSh.Imm(asm.R2, 4),
		asm.Add.Reg(asm.R1, asm.R2),
		asm.Add.Imm(asm.R1, ctrResetsRecv),
	)
	p.addOne(p.counters, stkCtr, asm.R1)
	p.entry(false)
	p.markReset()
	return p.exit()
}

// The timewait table maps a mini-socket's address to its life: when its
// timer was first armed (the hand-over), when it was last cancelled (0:
// armed), its ports, and its dwell index and group. Its value:
const (
	twBorn   = 0  // u64 ns
	twEnded  = 8  // u64 ns of the last timer_cancel, 0 while armed
	twPorts  = 16 // u32 local port << 16 | remote port
	twWhere  = 20 // u32 dwell state index | group << 8
	twSize   = 24
	twRearm  = 1_000_000 // ns: a cancel this close before a start is one re-arm (mod_timer)
	stkPorts = -72       // u16 remote, u16 local (probe_read destinations)
	stkTWVal = -96       // a new entry of the timewait table
)

// Which timer tracepoint a timer program is on.
const (
	timerStart = iota
	timerCancel
	timerExpire
)

// twTimer sets R8 to the timewait mini-socket whose tw_timer is the
// timer_list in the tracepoint's first argument, or exits for every other
// timer of the machine: the one compare that every timer pays.
func (p *progBuilder) twTimer() {
	p.emit(
		asm.LoadMem(asm.R6, asm.R1, 0, asm.DWord),
		asm.JEq.Imm(asm.R6, 0, "exit"),
		asm.LoadMem(asm.R1, asm.R6, int16(p.off.timerFunction), asm.DWord),
		asm.LoadImm(asm.R2, int64(p.twHandler), asm.DWord),
		asm.JNE.Reg(asm.R1, asm.R2, "exit"),
		asm.Mov.Reg(asm.R8, asm.R6),
		asm.Sub.Imm(asm.R8, int32(p.off.twTimer)),
		asm.StoreMem(asm.RFP, stkSock, asm.R8, asm.DWord),
	)
}

// probeRead reads size bytes at src+off (src a register holding a kernel
// address) into the stack at dst, or exits. Clobbers R0-R5.
func (p *progBuilder) probeRead(dst int16, src asm.Register, off uint32, size int32) {
	p.emit(
		asm.Mov.Reg(asm.R3, src),
		asm.Add.Imm(asm.R3, int32(off)),
		asm.Mov.Reg(asm.R1, asm.RFP),
		asm.Add.Imm(asm.R1, int32(dst)),
		asm.Mov.Imm(asm.R2, size),
		asm.FnProbeReadKernel.Call(),
		asm.JNE.Imm(asm.R0, 0, "exit"),
	)
}

// twLookup sets R6 to the mini-socket's entry in the timewait table, or 0.
func (p *progBuilder) twLookup() {
	p.mapCall(asm.FnMapLookupElem, p.tws, stkSock, 0)
	p.emit(
		asm.Mov.Reg(asm.R6, asm.R0),
	)
}

// Where a mini-socket's life ends, for twFoldLife: now (the time on the
// stack), or at the entry's last cancel.
const (
	twEndNow = iota
	twEndCancel
)

// twFoldLife folds the life of the entry in R6, from its birth to end,
// like twFold. Clobbers R0-R5 and R9.
func (p *progBuilder) twFoldLife(end int, killed bool) {
	p.slot()
	load := asm.LoadMem(asm.R4, asm.RFP, stkNow, asm.DWord)
	if end == twEndCancel {
		load = asm.LoadMem(asm.R4, asm.R6, twEnded, asm.DWord)
	}
	p.emit(
		load,
		asm.LoadMem(asm.R1, asm.R6, twBorn, asm.DWord),
		asm.Sub.Reg(asm.R4, asm.R1),
	)
	p.twFold(killed)
}

// twFold folds the lifetime in R4 of the entry in R6 into the dwell
// histogram of its group and state, and with killed counts it as ended
// before its timer. Clobbers R0-R5 and R9; needs slot().
func (p *progBuilder) twFold(killed bool) {
	p.dwellBucket() // R1 = bucket of R4
	p.emit(
		asm.LoadMem(asm.R9, asm.R6, twWhere, asm.Word),
		asm.Mov.Reg(asm.R2, asm.R9),
		asm.RSh.Imm(asm.R2, 8),
		asm.Mov.Reg(asm.R3, asm.R9),
		asm.And.Imm(asm.R3, 15),
	)
	p.addDwell()
	if killed {
		p.emit(
			asm.Mov.Reg(asm.R1, asm.R9),
			asm.RSh.Imm(asm.R1, 8),
			asm.LSh.Imm(asm.R1, 4),
			asm.And.Imm(asm.R9, 15),
			asm.Add.Reg(asm.R1, asm.R9),
			asm.Add.Imm(asm.R1, ctrTWKilled),
		)
		p.addOne(p.counters, stkCtr, asm.R1)
	}
}

// buildTimer follows the run's timewait mini-sockets through the timer
// tracepoints (timer:timer_start, timer:timer_cancel,
// timer:timer_expire_entry), where no tracing program on their teardown is
// needed: a mini-socket's life is its tw_timer's, armed at the hand-over
// and expiring at its end (tcp_fin_timeout for an orphaned FIN_WAIT2, 60 s
// for TIME_WAIT). A cancel not followed at once by a start (mod_timer's
// re-arm) is a kill: a new connection took the addresses over, a reset, or
// the namespace went; its lifetime is folded when the address is armed
// again, or by user space (foldKilled).
func (p *progBuilder) buildTimer(kind int) asm.Instructions {
	p.twTimer()
	switch kind {
	case timerCancel:
		p.twLookup()
		p.emit(
			asm.JEq.Imm(asm.R6, 0, "exit"),
			asm.LoadMem(asm.R1, asm.R6, twEnded, asm.DWord),
			asm.JNE.Imm(asm.R1, 0, "exit"),
			asm.FnKtimeGetNs.Call(),
			asm.StoreMem(asm.R6, twEnded, asm.R0, asm.DWord),
		)
		return p.exit()
	case timerExpire:
		p.twLookup()
		p.emit(
			asm.JEq.Imm(asm.R6, 0, "exit"),
			asm.FnKtimeGetNs.Call(),
			asm.StoreMem(asm.RFP, stkNow, asm.R0, asm.DWord),
		)
		p.twFoldLife(twEndNow, false)
		p.mapCall(asm.FnMapDeleteElem, p.tws, stkSock, 0)
		return p.exit()
	}
	// timer_start: the ports first, to tell a re-arm from a new mini-socket
	// at the address of one that was killed.
	p.probeRead(stkPorts, asm.R8, p.off.skcDport, 2)
	p.probeRead(stkPorts+2, asm.R8, p.off.skcNum, 2)
	p.emit(
		asm.LoadMem(asm.R9, asm.RFP, stkPorts+2, asm.Half),
		asm.LSh.Imm(asm.R9, 16),
		asm.LoadMem(asm.R1, asm.RFP, stkPorts, asm.Half),
		asm.HostTo(asm.BE, asm.R1, asm.Half),
		asm.Or.Reg(asm.R9, asm.R1), // R9 = local << 16 | remote
		asm.FnKtimeGetNs.Call(),
		asm.StoreMem(asm.RFP, stkNow, asm.R0, asm.DWord),
	)
	p.twLookup()
	p.emit(
		asm.JEq.Imm(asm.R6, 0, "new"),
		asm.LoadMem(asm.R1, asm.R6, twEnded, asm.DWord),
		asm.JEq.Imm(asm.R1, 0, "new"), // armed without a cancel: a stale entry
		asm.LoadMem(asm.R4, asm.RFP, stkNow, asm.DWord),
		asm.Sub.Reg(asm.R4, asm.R1),
		asm.JGT.Imm(asm.R4, twRearm, "killed"),
		asm.LoadMem(asm.R2, asm.R6, twPorts, asm.Word),
		asm.JNE.Reg(asm.R2, asm.R9, "killed"),
		asm.Mov.Imm(asm.R1, 0), // the same mini-socket re-armed
		asm.StoreMem(asm.R6, twEnded, asm.R1, asm.DWord),
		// An orphan's FIN_WAIT2 ends when the peer's FIN turns it into
		// TIME_WAIT (and re-arms it for 60 s): fold that part, start this.
		asm.LoadMem(asm.R1, asm.R6, twWhere, asm.Word),
		asm.And.Imm(asm.R1, 15),
		asm.JNE.Imm(asm.R1, stateOrphanFinWait2, "exit"),
	)
	p.probeRead(stkRead, asm.R8, p.off.twSubstate, 1)
	p.emit(
		asm.LoadMem(asm.R1, asm.RFP, stkRead, asm.Byte),
		asm.JNE.Imm(asm.R1, StateTimeWait, "exit"),
	)
	p.twFoldLife(twEndNow, false)
	p.emit(
		asm.LoadMem(asm.R1, asm.RFP, stkNow, asm.DWord),
		asm.StoreMem(asm.R6, twBorn, asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, asm.R6, twWhere, asm.Word),
		asm.And.Imm(asm.R1, ^15),
		asm.Or.Imm(asm.R1, StateTimeWait),
		asm.StoreMem(asm.R6, twWhere, asm.R1, asm.Word),
		asm.Ja.Label("exit"),
		// The entry's mini-socket was killed at its cancel: fold its life.
		asm.StoreMem(asm.RFP, stkTWVal+twPorts, asm.R9, asm.Word).WithSymbol("killed"), // R9 is clobbered by the fold
	)
	p.twFoldLife(twEndCancel, true)
	p.emit(
		asm.LoadMem(asm.R9, asm.RFP, stkTWVal+twPorts, asm.Word),
	)
	p.mapCall(asm.FnMapDeleteElem, p.tws, stkSock, 0)
	p.emit(
		// A new mini-socket: is it the run's?
		asm.Mov.Reg(asm.R1, asm.R9).WithSymbol("new"),
		asm.RSh.Imm(asm.R1, 16),
		asm.Mov.Reg(asm.R2, asm.R9),
		asm.And.Imm(asm.R2, 0xffff),
	)
	p.matchPorts(asm.R1, asm.R2)
	p.probeRead(stkRead, asm.R8, p.off.skcNet, 8)
	p.emit(
		asm.LoadMem(asm.R6, asm.RFP, stkRead, asm.DWord), // R9 holds the ports
		asm.JEq.Imm(asm.R6, 0, "exit"),
	)
	p.probeRead(stkRead, asm.R6, p.off.netInum, 4)
	p.emit(
		asm.LoadMem(asm.R1, asm.RFP, stkRead, asm.Word),
		asm.JNE.Imm32(asm.R1, int32(p.netns), "exit"),
	)
	p.probeRead(stkRead, asm.R8, p.off.twSubstate, 1)
	p.emit(
		asm.LoadMem(asm.R1, asm.RFP, stkRead, asm.Byte),
		asm.Mov.Imm(asm.R2, StateTimeWait),
		asm.JEq.Imm(asm.R1, StateTimeWait, "where"),
		asm.Mov.Imm(asm.R2, stateOrphanFinWait2),
		asm.JNE.Imm(asm.R1, StateFinWait2, "exit"),
		asm.Mov.Reg(asm.R1, asm.R7).WithSymbol("where"),
		asm.LSh.Imm(asm.R1, 8),
		asm.Or.Reg(asm.R2, asm.R1),
		asm.StoreMem(asm.RFP, stkTWVal+twWhere, asm.R2, asm.Word),
		asm.StoreMem(asm.RFP, stkTWVal+twPorts, asm.R9, asm.Word),
		asm.LoadMem(asm.R1, asm.RFP, stkNow, asm.DWord),
		asm.StoreMem(asm.RFP, stkTWVal+twBorn, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R1, 0),
		asm.StoreMem(asm.RFP, stkTWVal+twEnded, asm.R1, asm.DWord),
	)
	p.mapCall(asm.FnMapUpdateElem, p.tws, stkSock, stkTWVal)
	return p.exit()
}
