package capture

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// idleCapture holds idle frames among samples and a loss note.
func idleCapture(tb testing.TB) []byte {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Header{RecordLayout: 1})
	if err != nil {
		tb.Fatal(err)
	}
	for _, write := range []func() error{
		func() error { return w.WriteRecord(7, []byte{1, 2, 3}) },
		func() error { return w.WriteIdle(300_000_007) },
		func() error { return w.WriteLost(-1, 2, "ringbuf") },
		func() error { return w.WriteIdle(1<<64 - 1) },
		func() error { return w.WriteRecord(9, []byte{4, 5, 6}) },
	} {
		if err := write(); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Close(Trailer{}); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// Idle frames come back in their place among the records, with their
// time, and count in the trailer.
func TestIdleRoundTrip(t *testing.T) {
	r, err := NewReader(bytes.NewReader(idleCapture(t)))
	if err != nil {
		t.Fatal(err)
	}
	type frame struct {
		Type RecordType
		TS   uint64
	}
	var got []frame
	each(t, r, func(rec Record) { got = append(got, frame{rec.Type, rec.TS}) })
	want := []frame{{TypeSample, 7}, {TypeIdle, 300_000_007}, {TypeLost, 0}, {TypeIdle, 1<<64 - 1}, {TypeSample, 9}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("frames %v, want %v", got, want)
	}
	if r.Trailer().Records != 5 {
		t.Errorf("trailer counts %d records, want 5", r.Trailer().Records)
	}
}

// An idle frame whose checksums hold but whose payload is not one u64 is
// corruption at that frame.
func TestIdleMalformed(t *testing.T) {
	for _, p := range [][]byte{nil, {1, 2, 3, 4, 5, 6, 7}, {1, 2, 3, 4, 5, 6, 7, 8, 9}} {
		data := appendFrame(appendPreamble(nil, 1, orderLittle, 1, 0), TypeHeader, nil, []byte(`{"FormatVersion":1,"RecordLayout":1}`))
		data = appendFrame(data, TypeIdle, nil, p)
		r, err := NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Next(); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "idle record") {
			t.Errorf("%d-byte idle: got %v, want corruption naming the idle record", len(p), err)
		}
	}
}
