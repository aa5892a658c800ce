package dnsmsg

import "testing"

func TestTypeName(t *testing.T) {
	for _, c := range []struct {
		t     uint16
		name  string
		known bool
	}{{TypeA, "A", true}, {TypeAAAA, "AAAA", true}, {65, "HTTPS", true}, {0, "TYPE0", false}, {999, "TYPE999", false}} {
		if got := TypeName(c.t); got != c.name {
			t.Errorf("TypeName(%d) = %q, want %q", c.t, got, c.name)
		}
		if m, ok := TypeMnemonic(c.t); ok != c.known || ok && m != c.name {
			t.Errorf("TypeMnemonic(%d) = %q, %v", c.t, m, ok)
		}
	}
}
