package collector

import (
	"fmt"
	"strings"

	"github.com/cilium/ebpf/btf"
)

// kernelOffsets are the byte offsets of the kernel struct fields the
// programs read, taken from the kernel's BTF (/sys/kernel/btf/vmlinux),
// never assumed. The programs are BTF-typed tracepoints (tp_btf): they get
// the tracepoint's own arguments (a struct sock *, the states, the sk_buff)
// and read these fields directly, with no trace record built and no helper
// call per field.
type kernelOffsets struct {
	skcDport   uint32 // struct sock_common.skc_dport (__be16, remote port)
	skcNum     uint32 // struct sock_common.skc_num (u16, local port)
	skcState   uint32 // struct sock_common.skc_state (u8)
	skcNet     uint32 // struct sock_common.skc_net.net (struct net *)
	skProtocol uint32 // struct sock.sk_protocol (u16)
	inetSport  uint32 // struct inet_sock.inet_sport (__be16, read through bpf_probe_read_kernel)
	netInum    uint32 // struct net.ns.inum (u32)
	skbData    uint32 // struct sk_buff.data (the TCP header, for a reset sent without a socket)
	skbDev     uint32 // struct sk_buff.dev (struct net_device *)
	devNet     uint32 // struct net_device.nd_net.net (struct net *)
	haveSkbDev bool

	// twTimer is struct inet_timewait_sock.tw_timer: the mini-socket's
	// timer, from whose address the programs on the timer tracepoints find
	// the mini-socket; twSubstate is its tw_substate (u8: TIME_WAIT, or
	// FIN_WAIT2 for an orphan handed over by tcp_close).
	twTimer       uint32
	twSubstate    uint32
	timerFunction uint32 // struct timer_list.function

	// resetReasons names the values of enum sk_rst_reason (without the
	// SK_RST_REASON_ prefix, as the tracepoint prints them).
	resetReasons map[int]string
}

func loadKernelOffsets() (kernelOffsets, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return kernelOffsets{}, fmt.Errorf("kernel BTF: %w", err)
	}
	var o kernelOffsets
	var e error
	get := func(typ, path string) uint32 {
		if e != nil {
			return 0
		}
		var off uint32
		off, e = memberOffset(spec, typ, path)
		return off
	}
	o.skcDport = get("sock_common", "skc_dport")
	o.skcNum = get("sock_common", "skc_num")
	o.skcState = get("sock_common", "skc_state")
	o.skcNet = get("sock_common", "skc_net.net")
	o.skProtocol = get("sock", "sk_protocol")
	o.inetSport = get("inet_sock", "inet_sport")
	o.netInum = get("net", "ns.inum")
	o.skbData = get("sk_buff", "data")
	o.twTimer = get("inet_timewait_sock", "tw_timer")
	o.twSubstate = get("inet_timewait_sock", "tw_substate")
	o.timerFunction = get("timer_list", "function")
	if e != nil {
		return o, e
	}
	o.skbDev = get("sk_buff", "dev")
	o.devNet = get("net_device", "nd_net.net")
	o.haveSkbDev = e == nil
	o.resetReasons = map[int]string{}
	var reason *btf.Enum
	if err := spec.TypeByName("sk_rst_reason", &reason); err == nil {
		for _, v := range reason.Values {
			o.resetReasons[int(v.Value)] = strings.TrimPrefix(v.Name, "SK_RST_REASON_")
		}
	}
	return o, nil
}

// memberOffset finds a dotted member path in a struct, descending into
// anonymous structs and unions the way C does.
func memberOffset(spec *btf.Spec, typ, path string) (uint32, error) {
	var s *btf.Struct
	if err := spec.TypeByName(typ, &s); err != nil {
		return 0, fmt.Errorf("kernel BTF: struct %s: %w", typ, err)
	}
	var t btf.Type = s
	var off uint32
	for _, name := range strings.Split(path, ".") {
		o, mt, ok := findMember(t, name)
		if !ok {
			return 0, fmt.Errorf("kernel BTF: struct %s has no member %s", typ, path)
		}
		off += o
		t = btf.UnderlyingType(mt)
	}
	return off, nil
}

func findMember(t btf.Type, name string) (uint32, btf.Type, bool) {
	var members []btf.Member
	switch c := btf.UnderlyingType(t).(type) {
	case *btf.Struct:
		members = c.Members
	case *btf.Union:
		members = c.Members
	default:
		return 0, nil, false
	}
	for _, m := range members {
		if m.Name == name {
			return uint32(m.Offset / 8), m.Type, true
		}
		if m.Name == "" {
			if o, mt, ok := findMember(m.Type, name); ok {
				return uint32(m.Offset/8) + o, mt, true
			}
		}
	}
	return 0, nil, false
}
