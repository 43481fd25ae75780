// Package collector measures what happens during a run: per-connection phase
// latencies (latency*.go) and, on the kernel side, socket states and close
// counters sampled every interval.
//
// Socket states come from one of two sources. The netlink source asks the
// kernel through NETLINK_SOCK_DIAG with a state bitmask and, when ports are
// given, an inet_diag bytecode filter that the kernel runs itself, so the cost
// follows the sockets that match. The proc source parses
// /proc/net/tcp and /proc/net/tcp6 under an injectable root; it costs about
// one microsecond per socket on the host and is the fallback when netlink is
// refused.
//
// State names are the kernel's (include/net/tcp_states.h) without the TCP_
// prefix: ESTABLISHED, SYN_SENT, SYN_RECV, FIN_WAIT1, FIN_WAIT2, TIME_WAIT,
// CLOSE, CLOSE_WAIT, LAST_ACK, LISTEN, CLOSING. ss prints the same states as
// ESTAB, FIN-WAIT-2, ...; StateFromSS translates.
//
// Every count is split into sockets that still have a file descriptor and
// orphans (see StateCount and Counts.add for the exact rule): tcp_fin_timeout
// reaps only orphaned FIN_WAIT2.
//
// Kernel events come from the eBPF tracer (tracer*.go), where it is
// permitted: programs written with cilium/ebpf's asm package (no compiler,
// no object files) on the BTF-typed tracepoints sock:inet_sock_set_state,
// tcp:tcp_send_reset and tcp:tcp_receive_reset count, in the kernel, every
// state transition and reset of the run's sockets (its network namespace
// and target ports), per side and target port, and fold the time each
// connection spent in each state into log-linear histograms. They read the
// tracepoints' own arguments and the few struct fields they need at
// offsets from the kernel's BTF, so no trace record is built and tracefs
// is not needed. Each CPU adds to a slot of its own. On request
// (TracerConfig.Timewait), three more programs on the timer tracepoints
// follow the run's timewait mini-sockets, which the state tracepoint never
// reports, from their timer's first arm to its expiry. Nothing per
// connection crosses to user space: a read is a copy of memory-mapped
// counters, so a census derived from them costs the same for 10 or 100k
// sockets.
//
// Kernel counters come from /proc/net/netstat (TcpExt), /proc/net/snmp (Tcp)
// and /proc/net/sockstat{,6}; CounterScope says which of them the kernel keeps
// per network namespace and which for the whole host.
package collector
