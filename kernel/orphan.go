package kernel

// TCP states as the kernel numbers them (include/net/tcp_states.h).
const (
	StateEstablished = 1
	StateSynSent     = 2
	StateSynRecv     = 3
	StateFinWait1    = 4
	StateFinWait2    = 5
	StateTimeWait    = 6
	StateClose       = 7
	StateCloseWait   = 8
	StateLastAck     = 9
	StateListen      = 10
	StateClosing     = 11
)

// Orphaned is the one definition of an orphaned socket: its owner called
// close() (no file descriptor, no inode) and the kernel alone finishes the
// close. That happens only in the states tcp_fin_timeout,
// tcp_orphan_retries and tcp_max_orphans act on: FIN_WAIT1, FIN_WAIT2,
// CLOSING, LAST_ACK and CLOSE. Elsewhere "no inode" means something else:
// TIME_WAIT is always a descriptor-less mini-socket, SYN_RECV a request
// socket, and ESTABLISHED or CLOSE_WAIT without an inode are children
// waiting in a listener's accept queue.
func Orphaned(state uint8, hasInode bool) bool {
	if hasInode {
		return false
	}
	switch state {
	case StateFinWait1, StateFinWait2, StateClosing, StateLastAck, StateClose:
		return true
	}
	return false
}
