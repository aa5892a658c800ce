package lab

import (
	"os"
	"strings"
	"testing"
)

// With Options.Comm the threads that send the lookups carry that name, as
// bytes, whatever they are: what a trace shows as the sending process.
func TestSendersNamed(t *testing.T) {
	const name = "\x1b]0;pwned\a\x1b[2J"
	topo := setupOpts(t, "endpoints-2", Options{NAT: "iptables", Comm: name})
	if len(topo.senders) == 0 {
		t.Fatal("no sender threads")
	}
	for _, s := range topo.senders {
		var comm []byte
		err := s.do(func() error {
			var err error
			comm, err = os.ReadFile("/proc/thread-self/comm")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSuffix(string(comm), "\n"); got != name {
			t.Errorf("sender thread %d is named %q, want %q", s.tid, got, name)
		}
	}
}
