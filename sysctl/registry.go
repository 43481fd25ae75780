// Package sysctl knows the kernel settings that shape TCP close behaviour:
// a registry of keys (path, value shape and range, whether the kernel keeps
// them per network namespace or for the whole host, and what they really
// do), reading and validating them under an injectable /proc root, applying
// and restoring them, and running a variant in a fresh network (and user)
// namespace so that comparisons never touch the host.
package sysctl

import (
	"math"
	"sort"
)

// Scope says where the kernel keeps a key's value. It decides whether a key
// may be set in an isolated variant: a global key set from inside a network
// namespace would change the whole host, so the kernel hides it there.
type Scope string

// Scopes of a key, as measured on Linux 6.x: per-namespace keys show their
// default in a fresh namespace and are writable there; global keys are absent
// (or read-only) in every namespace but the initial one.
const (
	ScopeNetns  Scope = "netns"
	ScopeGlobal Scope = "global"
)

// Key describes one known sysctl. Values are whitespace-separated decimal
// integers (Fields of them), each within [Min, Max].
type Key struct {
	// Name is the dotted name, as sysctl(8) prints it.
	Name string `json:"name"`
	// Fields is how many integers the value holds (1, 2 for a range, 3 for
	// min/default/max triples).
	Fields int `json:"fields"`
	// Min and Max bound every field.
	Min int64 `json:"min"`
	Max int64 `json:"max"`
	// Ascending requires fields in non-decreasing order (ranges, triples).
	Ascending bool `json:"ascending,omitempty"`
	// Unit of each field ("s", "ms", "pages", "bytes", "sockets", ...).
	Unit  string `json:"unit,omitempty"`
	Scope Scope  `json:"scope"`
	// Meaning is one true line about what the key does.
	Meaning string `json:"meaning"`
	// Note explains a constraint the kernel checks beyond the range, shown
	// when the kernel refuses a value.
	Note string `json:"note,omitempty"`
}

// Path is the key's file relative to the /proc root: sys/net/ipv4/....
func (k Key) Path() string { return keyPath(k.Name) }

const (
	maxInt32 = math.MaxInt32
	// maxJiffySeconds is the largest seconds value every HZ up to 1000
	// converts to jiffies without overflow (the kernel refuses larger).
	maxJiffySeconds = math.MaxInt32 / 1000
)

// registry lists the known keys. Scopes were checked on Linux 6.18 by
// reading each key in a fresh network namespace: per-namespace keys are
// present and writable there, global ones absent (TestRegistryScopes keeps
// this true on the machine the tests run on).
var registry = []Key{
	{Name: "net.ipv4.tcp_fin_timeout", Fields: 1, Min: 1, Max: maxJiffySeconds, Unit: "s", Scope: ScopeNetns,
		Meaning: "how long an orphaned FIN_WAIT_2 socket (no descriptor left) waits for the peer's FIN; it does not change TIME_WAIT (fixed 60 s) nor a half-closed socket that still has its descriptor"},
	{Name: "net.ipv4.tcp_tw_reuse", Fields: 1, Min: 0, Max: 2, Scope: ScopeNetns,
		Meaning: "let our own outgoing connect() reuse a TIME_WAIT port: 0 off, 1 on, 2 loopback only (default); needs tcp_timestamps, counted in TcpExt.TWRecycled"},
	{Name: "net.ipv4.tcp_tw_reuse_delay", Fields: 1, Min: 1, Max: 60000, Unit: "ms", Scope: ScopeNetns,
		Meaning: "how old a TIME_WAIT socket must be before tcp_tw_reuse may take its port (default 1000 ms)"},
	{Name: "net.ipv4.tcp_max_tw_buckets", Fields: 1, Min: 0, Max: maxInt32, Unit: "sockets", Scope: ScopeNetns,
		Meaning: "most TIME_WAIT sockets kept; beyond it a closing socket is destroyed without TIME_WAIT and TcpExt.TCPTimeWaitOverflow counts it"},
	{Name: "net.ipv4.tcp_timestamps", Fields: 1, Min: 0, Max: 2, Scope: ScopeNetns,
		Meaning: "TCP timestamps (RFC 7323): 0 off, 1 on with per-connection random offsets (default), 2 on without; tcp_tw_reuse needs them"},
	{Name: "net.ipv4.ip_local_port_range", Fields: 2, Min: 1, Max: 65535, Ascending: true, Unit: "port", Scope: ScopeNetns,
		Meaning: "ephemeral ports connect() picks from; with client-first FIN each port stays in TIME_WAIT 60 s per destination, so this bounds the close rate",
		Note:    "the kernel also requires the low end to be at least net.ipv4.ip_unprivileged_port_start (default 1024)"},
	{Name: "net.ipv4.tcp_orphan_retries", Fields: 1, Min: 0, Max: 255, Scope: ScopeNetns,
		Meaning: "retransmissions before an orphaned socket (closed by the application) is killed; 0 means the kernel's default of 8"},
	{Name: "net.ipv4.tcp_max_orphans", Fields: 1, Min: 0, Max: maxInt32, Unit: "sockets", Scope: ScopeGlobal,
		Meaning: "most orphaned sockets (closed, not yet gone) on the whole host; beyond it orphans are reset at once (\"too many orphaned sockets\")"},
	{Name: "net.ipv4.tcp_rfc1337", Fields: 1, Min: 0, Max: 1, Scope: ScopeNetns,
		Meaning: "1: a socket in TIME_WAIT ignores an incoming RST instead of dying early (RFC 1337 TIME-WAIT assassination hazard)"},
	{Name: "net.ipv4.tcp_keepalive_time", Fields: 1, Min: 1, Max: maxJiffySeconds, Unit: "s", Scope: ScopeNetns,
		Meaning: "idle time before the first keepalive probe, for SO_KEEPALIVE sockets that set no TCP_KEEPIDLE of their own (Go sets 15 s on its connections unless told otherwise)"},
	{Name: "net.ipv4.tcp_keepalive_intvl", Fields: 1, Min: 1, Max: maxJiffySeconds, Unit: "s", Scope: ScopeNetns,
		Meaning: "interval between keepalive probes once probing has started"},
	{Name: "net.ipv4.tcp_keepalive_probes", Fields: 1, Min: 0, Max: 255, Scope: ScopeNetns,
		Meaning: "unanswered keepalive probes before the connection is dropped"},
	{Name: "net.ipv4.tcp_max_syn_backlog", Fields: 1, Min: 1, Max: maxInt32, Unit: "requests", Scope: ScopeNetns,
		Meaning: "most half-open (SYN_RECV) connection requests a listener keeps before dropping or sending syncookies"},
	{Name: "net.ipv4.tcp_syncookies", Fields: 1, Min: 0, Max: 2, Scope: ScopeNetns,
		Meaning: "SYN cookies when a listener's SYN queue overflows: 0 off, 1 on overflow (default), 2 always"},
	{Name: "net.ipv4.tcp_mem", Fields: 3, Min: 1, Max: math.MaxInt64, Ascending: true, Unit: "pages", Scope: ScopeGlobal,
		Meaning: "low, pressure and high marks of memory all TCP sockets on the host may use; above high, new allocations fail"},
	{Name: "net.core.somaxconn", Fields: 1, Min: 0, Max: maxInt32, Unit: "connections", Scope: ScopeNetns,
		Meaning: "cap on a listener's accept queue (the backlog passed to listen(); Go asks for this value)"},
	{Name: "net.ipv4.tcp_syn_retries", Fields: 1, Min: 1, Max: 127, Scope: ScopeNetns,
		Meaning: "SYN retransmissions of an outgoing connect() before it fails with ETIMEDOUT"},
	{Name: "net.ipv4.tcp_synack_retries", Fields: 1, Min: 0, Max: 255, Scope: ScopeNetns,
		Meaning: "SYN-ACK retransmissions for a half-open incoming connection before it is dropped"},
	{Name: "net.ipv4.tcp_retries2", Fields: 1, Min: 0, Max: 255, Scope: ScopeNetns,
		Meaning: "retransmissions of data (or of a FIN) on an established connection before it is killed"},
	{Name: "net.ipv4.tcp_abort_on_overflow", Fields: 1, Min: 0, Max: 1, Scope: ScopeNetns,
		Meaning: "1: reset a new connection when the accept queue is full instead of dropping its ACK and letting the client retry"},
	{Name: "net.ipv4.tcp_rmem", Fields: 3, Min: 1, Max: maxInt32, Ascending: true, Unit: "bytes", Scope: ScopeNetns,
		Meaning: "min, default and max receive buffer of a TCP socket (autotuned between them)"},
	{Name: "net.ipv4.tcp_wmem", Fields: 3, Min: 1, Max: maxInt32, Ascending: true, Unit: "bytes", Scope: ScopeNetns,
		Meaning: "min, default and max send buffer of a TCP socket"},
}

var byName = func() map[string]Key {
	m := make(map[string]Key, len(registry))
	for _, k := range registry {
		m[k.Name] = k
	}
	return m
}()

// Keys returns the registry sorted by name, for listing.
func Keys() []Key {
	out := append([]Key(nil), registry...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Lookup returns the registry entry of a dotted name.
func Lookup(name string) (Key, bool) {
	k, ok := byName[name]
	return k, ok
}
