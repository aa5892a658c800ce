package tracer

import (
	"fmt"
	"os"
)

// Limits of Options. Zero takes the default; anything else out of range is
// refused by Open, before it asks the kernel for maps it would refuse or
// that a trace has no use for.
const (
	// MaxRingSize bounds RingSize: 1 GiB holds about 3 million records,
	// many seconds of the busiest node's events, and is kernel memory for
	// the whole trace.
	MaxRingSize = 1 << 30
	// MaxHistory bounds History: the history map holds one struct history
	// (what a conntrack entry's events tell, about 760 bytes) per slot.
	MaxHistory = 1 << 20
	// MaxMaxActive is the kernel's limit on a kretprobe's instances
	// (KRETPROBE_MAXACTIVE_MAX, register_kretprobe).
	MaxMaxActive = 4096
)

// MinRingSize is the smallest RingSize: a ring buffer is at least a page.
func MinRingSize() int { return os.Getpagesize() }

// check refuses options out of range, naming the field.
func (o Options) check() error {
	switch {
	case o.RingSize != 0 && (o.RingSize < MinRingSize() || o.RingSize > MaxRingSize || o.RingSize&(o.RingSize-1) != 0):
		return fmt.Errorf("RingSize %d: want a power of two from %d to %d", o.RingSize, MinRingSize(), MaxRingSize)
	case o.History < 0 || o.History > MaxHistory:
		return fmt.Errorf("History %d: want 1 to %d", o.History, MaxHistory)
	case o.MaxActive < 0 || o.MaxActive > MaxMaxActive:
		return fmt.Errorf("MaxActive %d: want 1 to %d", o.MaxActive, MaxMaxActive)
	}
	return nil
}
