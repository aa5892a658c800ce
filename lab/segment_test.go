package lab

import (
	"context"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// stepClock is a clock that moves 10 ms per reading and lets the flow
// counter grow by 3 before each, so that every segment has a known length
// and count.
func stepClock(start time.Time, packets *atomic.Uint64) func() time.Time {
	n := 0
	return func() time.Time {
		n++
		packets.Add(3)
		return start.Add(time.Duration(n) * 10 * time.Millisecond)
	}
}

func TestSegmenterMarks(t *testing.T) {
	var packets atomic.Uint64
	packets.Store(100) // packets before the start belong to no segment
	start := time.Unix(1000, 0)
	s := newSegmenter(packets.Load, &pauser{}, start, stepClock(start, &packets))
	if err := readMarks(strings.NewReader("untraced\ntraced fentry all\n\nuntraced\n"), s); err != nil {
		t.Fatal(err)
	}
	got := s.finish()
	s.mark("late", false) // read as the flood ended: dropped
	if again := s.finish(); len(again) != len(got) {
		t.Errorf("a mark after finish changed the segments: %+v", again)
	}
	want := []string{"", "untraced", "traced fentry all", "", "untraced"}
	if len(got) != len(want) {
		t.Fatalf("segments %+v; want labels %q", got, want)
	}
	var sum uint64
	for i, g := range got {
		if g.Label != want[i] {
			t.Errorf("segment %d: label %q, want %q", i, g.Label, want[i])
		}
		// The i-th boundary is the (i+1)-th clock reading.
		if g.Start != time.Duration(i)*10*time.Millisecond {
			t.Errorf("segment %d starts at %v", i, g.Start)
		}
		if g.Duration != 10*time.Millisecond || g.Packets != 3 {
			t.Errorf("segment %d: %v, %d packets; want 10ms, 3", i, g.Duration, g.Packets)
		}
		sum += g.Packets
	}
	if sum != packets.Load()-100 {
		t.Errorf("segments hold %d packets, the counter grew by %d", sum, packets.Load()-100)
	}
}

// Marks cut the count while senders add to it: every flow is in exactly one
// segment, whatever the interleaving.
func TestSegmenterConcurrent(t *testing.T) {
	var packets atomic.Uint64
	s := newSegmenter(packets.Load, &pauser{}, time.Now(), time.Now)
	var (
		wg   sync.WaitGroup
		stop atomic.Bool
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				packets.Add(1)
			}
		}()
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- readMarks(pr, s) }()
	for i := 0; i < 200; i++ {
		if _, err := io.WriteString(pw, "w\n"); err != nil {
			t.Fatal(err)
		}
	}
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	stop.Store(true)
	wg.Wait()
	segs := s.finish()
	if len(segs) != 201 {
		t.Fatalf("%d segments for 200 marks", len(segs))
	}
	var sum uint64
	for i, g := range segs {
		sum += g.Packets
		if i > 0 && g.Start != segs[i-1].Start+segs[i-1].Duration {
			t.Errorf("segment %d starts at %v, its predecessor ends at %v", i, g.Start, segs[i-1].Start+segs[i-1].Duration)
		}
	}
	if sum != packets.Load() {
		t.Errorf("segments hold %d of %d packets", sum, packets.Load())
	}
}

func TestReadMarksError(t *testing.T) {
	var packets atomic.Uint64
	s := newSegmenter(packets.Load, &pauser{}, time.Now(), time.Now)
	err := readMarks(strings.NewReader(strings.Repeat("x", 70000)+"\n"), s)
	if err == nil || !strings.Contains(err.Error(), "marks") || strings.Contains(err.Error(), "\n") {
		t.Errorf("a 70000-byte mark: %v", err)
	}
}

// A line that starts with "!" pauses the senders until the next line.
func TestSegmenterPause(t *testing.T) {
	var (
		packets atomic.Uint64
		pause   pauser
	)
	s := newSegmenter(packets.Load, &pause, time.Now(), time.Now)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- readMarks(pr, s) }()
	deadline := time.Now().Add(time.Minute)
	ctx := context.Background()

	io.WriteString(pw, "!startup fentry all\n")
	for pause.held.Load() == nil {
		time.Sleep(time.Millisecond) // until the reader got the line
	}
	resumed := make(chan bool, 1)
	go func() {
		goOn, waited := pause.wait(ctx, deadline)
		resumed <- goOn && waited
	}()
	select {
	case <-resumed:
		t.Fatal("a sender went on in a paused segment")
	case <-time.After(50 * time.Millisecond):
	}
	io.WriteString(pw, "traced fentry all\n")
	if ok := <-resumed; !ok {
		t.Error("the sender did not go on after the pause")
	}
	if goOn, waited := pause.wait(ctx, deadline); !goOn || waited {
		t.Errorf("not paused: wait says go on %v, waited %v", goOn, waited)
	}
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	segs := s.finish()
	if len(segs) != 3 || segs[1].Label != "startup fentry all" || !segs[1].Paused || segs[2].Paused || segs[2].Label != "traced fentry all" {
		t.Errorf("segments %+v", segs)
	}

	// A flood that ends (ctx, deadline) while paused stops its senders.
	pause.pause()
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if goOn, _ := pause.wait(cctx, deadline); goOn {
		t.Error("a cancelled flood goes on while paused")
	}
	if goOn, _ := pause.wait(ctx, time.Now().Add(10*time.Millisecond)); goOn {
		t.Error("a flood past its deadline goes on while paused")
	}
}
