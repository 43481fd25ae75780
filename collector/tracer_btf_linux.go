package collector

import (
	"fmt"
	"strings"

	"github.com/cilium/ebpf/btf"
)

// kernelOffsets are the byte offsets of the few kernel struct fields the
// programs read through bpf_probe_read_kernel, taken from the kernel's BTF
// (/sys/kernel/btf/vmlinux), never assumed.
type kernelOffsets struct {
	skNet      uint32 // struct sock_common.skc_net (a possible_net_t: struct net *)
	skState    uint32 // struct sock_common.skc_state (u8)
	netInum    uint32 // struct net.ns.inum (u32)
	skbDev     uint32 // struct sk_buff.dev (struct net_device *)
	devNet     uint32 // struct net_device.nd_net
	haveSkbDev bool
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
	o.skNet = get("sock_common", "skc_net")
	o.skState = get("sock_common", "skc_state")
	o.netInum = get("net", "ns.inum")
	if e != nil {
		return o, e
	}
	o.skbDev = get("sk_buff", "dev")
	o.devNet = get("net_device", "nd_net")
	o.haveSkbDev = e == nil
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
