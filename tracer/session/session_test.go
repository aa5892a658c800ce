package session

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// A capture's record times and the probes' bpf_ktime_get_ns share
// CLOCK_MONOTONIC: MonotonicNow, which reads it without a system call, must
// bracket a system call's reading.
func TestMonotonicNowIsClockMonotonic(t *testing.T) {
	for range 1000 {
		before := MonotonicNow()
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			t.Fatal(err)
		}
		after := MonotonicNow()
		// The offset is fixed at start-up from two reads made back to back;
		// a millisecond either way is far below what a record's read time
		// in a capture tells (how long it waited in the ring buffer).
		const slack = 1_000_000
		if now := uint64(ts.Nano()); now+slack < before || now > after+slack {
			t.Fatalf("CLOCK_MONOTONIC %d outside MonotonicNow's [%d, %d]", now, before, after)
		}
	}
}

// The wait after a wakeup must give way to SIGINT and to selftest's stop at
// once, or trace would drain late.
func TestGatherStops(t *testing.T) {
	sig := make(chan os.Signal, 1)
	sig <- os.Interrupt
	if !(&Session{cfg: Config{Signals: sig}}).gather() {
		t.Error("gather with a pending signal did not report a stop")
	}
	stop := make(chan struct{})
	close(stop)
	if !(&Session{cfg: Config{Stop: stop}}).gather() {
		t.Error("gather after stop did not report a stop")
	}
	if (&Session{}).gather() {
		t.Error("gather without a stop reported one")
	}
}
