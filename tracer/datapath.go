package tracer

import (
	"errors"
	"os"

	"github.com/cilium/ebpf"
)

// DatapathNotes says what on this node changes what ctprobe can see of
// these races (docs/kernel-notes.md, Datapaths that bypass conntrack):
// service load-balancing done by BPF programs at the socket, before
// conntrack; IPVS, whose DNAT is not a conntrack NAT binding; or no NAT
// at all. Each note is a sentence for the user.
func DatapathNotes(k Kernel) []string {
	var notes []string
	if _, ok := k.Symbols["nf_nat_setup_info"]; !ok {
		notes = append(notes, "no NAT is loaded (nf_nat): races 2 to 4 need NAT and cannot happen here; races 1 and 5 can")
	}
	if _, err := os.Stat("/proc/net/ip_vs"); err == nil {
		notes = append(notes, "IPVS is loaded: its service DNAT rewrites the reply tuple through nf_conntrack_alter_reply, not a NAT binding, so ctprobe sees its clashes but not the endpoint choice (kube-proxy in IPVS mode)")
	}
	if n := socketLBPrograms(); n > 0 {
		notes = append(notes, "BPF programs translate service addresses at the socket (cgroup connect/sendmsg hooks, as Cilium's kube-proxy replacement does): a pod's packets reach conntrack already addressed to an endpoint, so the DNAT races 2 and 3 do not occur for that traffic")
	}
	return notes
}

// socketLBPrograms counts the loaded cgroup sock_addr programs (connect4,
// sendmsg4, ...): socket-level service translation. It needs the
// privileges to list programs; without them it finds none.
func socketLBPrograms() int {
	n := 0
	var id ebpf.ProgramID
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) || err != nil {
			return n
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue
		}
		if info, err := p.Info(); err == nil && info.Type == ebpf.CGroupSockAddr {
			n++
		}
		p.Close()
	}
}
