package tracer

import (
	"strings"
	"testing"
)

// Open refuses options out of range, naming the field, before it asks the
// kernel for anything (a ring size over 4 GiB was truncated to 32 bits and
// refused by the kernel with a map error; a negative history became the
// default).
func TestOpenRefusesOptionsOutOfRange(t *testing.T) {
	for _, c := range []struct {
		opts Options
		want string
	}{
		{Options{RingSize: 1 << 33}, "RingSize 8589934592: want a power of two"},
		{Options{RingSize: 3 << 20}, "RingSize 3145728: want a power of two"},
		{Options{RingSize: -1}, "RingSize -1"},
		{Options{History: 1 << 32}, "History 4294967296: want 1 to 1048576"},
		{Options{History: -1}, "History -1"},
		{Options{MaxActive: 4097}, "MaxActive 4097: want 1 to 4096"},
	} {
		if _, err := Open(c.opts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.opts, err, c.want)
		}
	}
	for _, ok := range []Options{{}, {RingSize: MinRingSize()}, {RingSize: MaxRingSize, History: MaxHistory, MaxActive: MaxMaxActive}} {
		if err := ok.check(); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
}
