package capture

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"reflect"
	"testing"

	"github.com/ctprobe/ctprobe/tracer/names"
)

// Names frames come back in their place among the records, whole, split
// into frames under the payload limit however many entries were written.
func TestNamesRoundTrip(t *testing.T) {
	var entries []names.Entry
	for i := 0; i < 2*namesPerFrame+3; i++ {
		entries = append(entries, names.Entry{
			Key:   names.Key{Netns: uint32(4026532000 + i), PID: uint32(i), Addr: netip.AddrFrom4([4]byte{10, 88, 0, byte(i)})},
			Names: names.Names{Pod: names.Pod{Namespace: "default", Name: fmt.Sprint("client-", i), UID: "5c2a8e41-7d19-4b6e-8f02-93d4e1a7b6c2"}, Container: "lookup", ContainerID: fmt.Sprintf("%064x", i)},
		})
	}
	entries[0].Key.Addr = netip.Addr{} // no address: omitted, read back as none
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Header{RecordLayout: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteNames(entries[:1]); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteRecord(7, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteNames(entries[1:]); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(Trailer{}); err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	var got []names.Entry
	var types []RecordType
	each(t, r, func(rec Record) {
		types = append(types, rec.Type)
		got = append(got, rec.Names...)
	})
	if want := []RecordType{TypeNames, TypeSample, TypeNames, TypeNames, TypeNames}; !reflect.DeepEqual(types, want) {
		t.Errorf("frames %v, want %v", types, want)
	}
	if !reflect.DeepEqual(got, entries) {
		t.Errorf("names read back differ:\n%+v\nwant\n%+v", got[:2], entries[:2])
	}
}

// each calls f with every record of a whole capture, in order.
func each(t testing.TB, r *Reader, f func(Record)) {
	t.Helper()
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		f(rec)
	}
}

// A names frame whose checksums hold but whose JSON does not is corruption
// at that frame.
func TestNamesMalformed(t *testing.T) {
	data := appendFrame(appendPreamble(nil, 1, orderLittle, 1, 0), TypeHeader, nil, []byte(`{"FormatVersion":1,"RecordLayout":1}`))
	data = appendFrame(data, TypeNames, nil, []byte(`{"entries":[{"key":{"addr":"not an address"}}]}`))
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); !errors.Is(err, ErrCorrupt) {
		t.Errorf("got %v, want corruption", err)
	}
}
