package render

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ctprobe/ctprobe/tracer/loss"
)

type failing struct{ Discard }

func (failing) Warning(string) error { return errors.New("broken pipe") }

// Every renderer of a Tee gets every call, in order, even after one of them
// failed, and the failure is returned.
func TestTee(t *testing.T) {
	var a, b bytes.Buffer
	now := func() time.Time { return time.Unix(1700000000, 0) }
	tee := Tee{NewJSON(&a, Options{Now: now}), failing{}, NewJSON(&b, Options{Now: now})}
	err := tee.Warning("w")
	if err == nil || !strings.Contains(err.Error(), "broken pipe") {
		t.Errorf("Warning: %v, want the failing renderer's error", err)
	}
	if err := tee.Lost(loss.Count{Kind: loss.Ringbuf, CPU: 1, Count: 3}); err != nil {
		t.Fatal(err)
	}
	if a.String() != b.String() || strings.Count(a.String(), "\n") != 2 {
		t.Errorf("the renderers saw different calls:\n%s---\n%s", a.String(), b.String())
	}
}
