package privs

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSetString(t *testing.T) {
	for s, want := range map[Set]string{
		0:                "none",
		Of(unix.CAP_BPF): "cap_bpf",
		Of(unix.CAP_SYS_ADMIN, unix.CAP_SYS_PTRACE): "cap_sys_ptrace,cap_sys_admin",
		Of(unix.CAP_CHOWN, 63):                      "cap_0,cap_63",
	} {
		if got := s.String(); got != want {
			t.Errorf("%#x: %q, want %q", uint64(s), got, want)
		}
	}
}

// Lower changes the capabilities of the thread that runs fn, for fn only:
// the caller's stay. (Drop and Raise are proven with the tracer, in a
// process of its own that dropped its capabilities:
// tracer.TestDropPrivileges.)
func TestLowerOneThread(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root's capabilities")
	}
	admin := Of(unix.CAP_SYS_ADMIN)
	before, permitted, err := Current()
	if err != nil {
		t.Fatal(err)
	}
	if before&admin == 0 {
		t.Skip("CAP_SYS_ADMIN not effective")
	}
	var inside Set
	err = Lower(admin, func() error {
		var err error
		inside, _, err = Current()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if inside != before&^admin {
		t.Errorf("inside Lower: %v, want %v", inside, before&^admin)
	}
	after, permittedAfter, _ := Current()
	if after != before || permittedAfter != permitted {
		t.Errorf("caller's capabilities changed: %v/%v -> %v/%v", before, permitted, after, permittedAfter)
	}
}
