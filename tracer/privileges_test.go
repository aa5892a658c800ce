package tracer

import (
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// What each kernel range needs: CAP_SYS_ADMIN before 5.8, CAP_BPF and
// CAP_PERFMON from 5.8, and CAP_SYS_RESOURCE before 5.11 unless the
// memlock limit is already unlimited.
func TestMissingCaps(t *testing.T) {
	caps := func(cs ...int) uint64 {
		var v uint64
		for _, c := range cs {
			v |= 1 << uint(c)
		}
		return v
	}
	for _, c := range []struct {
		caps      uint64
		release   string
		unlimited bool
		want      []string
	}{
		{caps(unix.CAP_BPF, unix.CAP_PERFMON), "6.1.0", false, nil},
		{caps(unix.CAP_BPF), "6.1.0", false, []string{"CAP_PERFMON"}},
		{caps(unix.CAP_SYS_ADMIN), "6.12.0", false, nil},
		{caps(unix.CAP_BPF, unix.CAP_PERFMON), "5.10.0-32-cloud-amd64", false, []string{"CAP_SYS_RESOURCE"}},
		{caps(unix.CAP_BPF, unix.CAP_PERFMON), "5.10.0-32-cloud-amd64", true, nil},
		{caps(unix.CAP_BPF, unix.CAP_PERFMON, unix.CAP_SYS_RESOURCE), "5.10.0", false, nil},
		{caps(unix.CAP_BPF, unix.CAP_PERFMON, unix.CAP_SYS_RESOURCE), "4.19.0", false, []string{"CAP_SYS_ADMIN"}},
		{0, "5.4.0", false, []string{"CAP_SYS_ADMIN", "CAP_SYS_RESOURCE"}},
	} {
		if got := missingCaps(c.caps, parseRelease(c.release), c.unlimited); !slices.Equal(got, c.want) {
			t.Errorf("%s caps %#x unlimited %v: missing %v, want %v", c.release, c.caps, c.unlimited, got, c.want)
		}
	}
	for _, r := range []string{"4.19.0", "5.10.0", "6.1.0"} {
		if capsNeeded(parseRelease(r)) == "" {
			t.Errorf("%s: no capabilities named", r)
		}
	}
}
