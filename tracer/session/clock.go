package session

import (
	"time"

	"golang.org/x/sys/unix"
)

// MonotonicNow is CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns. It is
// read once per record, so it comes from Go's monotonic clock (the same
// CLOCK_MONOTONIC, read through the vDSO) and one system call at start-up,
// not from a system call each time.
func MonotonicNow() uint64 {
	return monoAtStart + uint64(time.Since(wallAtStart))
}

var monoAtStart, wallAtStart = func() (uint64, time.Time) {
	wall := time.Now()
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano()), wall
}()

// BootTime is the wall-clock time of monotonic time 0, in ns since the
// Unix epoch: what render.Clock and capture headers need to turn kernel
// timestamps into times of day.
func BootTime() int64 {
	return time.Now().UnixNano() - int64(MonotonicNow())
}
