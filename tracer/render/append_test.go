package render

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// The clock of text lines and the time of JSON lines are what
// time.Format writes, for any time a Clock can give (int64 nanoseconds)
// and years of one and five digits, in zones east and west, with offsets
// of odd minutes and seconds.
func TestTimesAsFormat(t *testing.T) {
	zones := []*time.Location{time.UTC, time.Local,
		time.FixedZone("east", 5*3600+45*60), time.FixedZone("west", -(3*3600 + 30*60)),
		time.FixedZone("lmt", -(17*60 + 32)), time.FixedZone("sub-minute-west", -30),
		time.FixedZone("sub-minute-east", 59), time.FixedZone("far", 99*3600+59*60), time.FixedZone("decades", 1<<30)}
	ns := []int64{0, 1, -1, math.MaxInt64, math.MinInt64, 1_700_000_000_123_456_789, 1_700_000_000_000_000_000,
		1_700_000_000_100_000_000, 1_700_000_000_000_001_000}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		ns = append(ns, rng.Int64(), int64(rng.Uint64()))
	}
	times := []time.Time{time.Date(5, 1, 2, 3, 4, 5, 600, time.UTC), time.Date(12345, 12, 31, 23, 59, 59, 999_999_999, time.UTC)}
	for _, n := range ns {
		times = append(times, time.Unix(0, n))
	}
	for _, loc := range zones {
		for _, tm := range times {
			tm := tm.In(loc)
			if got, want := string(appendClock(nil, tm)), tm.Format("15:04:05.000000"); got != want {
				t.Fatalf("%v in %v: clock %q, want %q", tm.UTC(), loc, got, want)
			}
			if got, want := string(appendJSONTime(nil, tm)), `"`+tm.Format(time.RFC3339Nano)+`"`; got != want {
				t.Fatalf("%v in %v: JSON time %s, want %s", tm.UTC(), loc, got, want)
			}
		}
	}
}
