package probe

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// The records the programs send (struct event and what it holds) must have
// one layout on every target: tracer/event decodes them with the one Go type
// bpf2go generates, whichever architecture the binary is built for, and a
// capture recorded on one is read on the other.
func TestRecordLayoutSameOnEveryTarget(t *testing.T) {
	layouts := map[string]string{}
	for _, obj := range []string{"bpf_x86_bpfel.o", "bpf_arm64_bpfel.o"} {
		spec, err := ebpf.LoadCollectionSpec(obj)
		if err != nil {
			t.Fatal(err)
		}
		var ev *btf.Struct
		if err := spec.Types.TypeByName("event", &ev); err != nil {
			t.Fatalf("%s: %v", obj, err)
		}
		var b strings.Builder
		writeLayout(t, &b, ev, "event", 0)
		layouts[obj] = b.String()
		t.Logf("%s: %d fields", obj, strings.Count(b.String(), "\n"))
	}
	if x86, arm64 := layouts["bpf_x86_bpfel.o"], layouts["bpf_arm64_bpfel.o"]; x86 != arm64 {
		t.Errorf("struct event differs between targets:\nx86:\n%s\narm64:\n%s", x86, arm64)
	}
}

// writeLayout writes one line per field of typ that is not a struct (the
// record has no bitfields): its path, byte offset and size.
func writeLayout(t *testing.T, b *strings.Builder, typ btf.Type, path string, off uint32) {
	t.Helper()
	size, err := btf.Sizeof(typ)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if st, ok := btf.UnderlyingType(typ).(*btf.Struct); ok {
		for _, m := range st.Members {
			writeLayout(t, b, m.Type, path+"."+m.Name, off+m.Offset.Bytes())
		}
		return
	}
	fmt.Fprintf(b, "%s offset %d size %d\n", path, off, size)
}
