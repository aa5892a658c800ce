package tracer

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// A kernel without NAT is said to have none; a loaded cgroup sock_addr
// program (socket-level service translation, as Cilium's) is noticed.
func TestDatapathNotes(t *testing.T) {
	noNAT := Kernel{Symbols: map[string]Symbol{"nf_conntrack_in": {Names: []string{"nf_conntrack_in"}}}}
	if notes := strings.Join(DatapathNotes(noNAT), "\n"); !strings.Contains(notes, "no NAT is loaded") {
		t.Errorf("without nf_nat: %q", notes)
	}
	withNAT := Kernel{Symbols: map[string]Symbol{"nf_nat_setup_info": {Names: []string{"nf_nat_setup_info"}}}}
	if notes := strings.Join(DatapathNotes(withNAT), "\n"); strings.Contains(notes, "no NAT is loaded") {
		t.Errorf("with nf_nat: %q", notes)
	}

	requireRoot(t)
	before := socketLBPrograms()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.CGroupSockAddr, AttachType: ebpf.AttachCGroupInet4Connect, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()},
	})
	if err != nil {
		t.Skipf("load a cgroup sock_addr program: %v", err)
	}
	defer prog.Close()
	if after := socketLBPrograms(); after != before+1 {
		t.Fatalf("sock_addr programs: %d before, %d with one more loaded", before, after)
	}
	if notes := strings.Join(DatapathNotes(withNAT), "\n"); !strings.Contains(notes, "at the socket") {
		t.Errorf("with a sock_addr program loaded: %q", notes)
	}
}
