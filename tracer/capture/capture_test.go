package capture

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ctprobe/ctprobe/tracer/kstat"
	"github.com/ctprobe/ctprobe/tracer/plan"
)

var update = flag.Bool("update", false, "rewrite testdata/v1.ctp")

func testHeader() Header {
	return Header{
		CtprobeVersion:   "v0.1.0-test",
		KernelRelease:    "6.8.0-45-generic",
		Hostname:         "node-a",
		Arch:             "amd64",
		BootTimeUnixNano: 1_700_000_000_000_000_000,
		StartUnixNano:    1_700_000_100_000_000_000,
		RecordLayout:     1,
		RecordSize:       0, // the items vary in size
		Plan: []plan.Entry{
			{Point: "ct_in", Function: "nf_conntrack_in", Attach: "fexit", Status: "attached"},
			{Point: "clash", Function: "nf_ct_resolve_clash", Attach: "kprobe", Status: "skipped", Reason: "not in this kernel"},
		},
		Filters:  map[string]string{"proto": "udp", "port": "53"},
		Mode:     "incidents",
		Counters: []kstat.NetnsCounters{{Netns: 4026531840, Name: "init", Values: map[string]uint64{"insert_failed": 3, "drop": 0}}},
		Extra:    map[string]string{"note": "test"},
	}
}

type item struct {
	lost  bool
	ts    uint64
	raw   []byte
	cpu   int
	count uint64
	kind  string
}

// testItems returns samples of varying sizes (including empty and a
// size above the writer's scratch buffer) interleaved with lost notes.
func testItems(big bool) []item {
	var items []item
	sizes := []int{0, 1, 7, 8, 312, 313, 4096}
	if big {
		sizes = append(sizes, writeBufferSize+1, MaxRaw)
	}
	for i, n := range sizes {
		raw := make([]byte, n)
		for j := range raw {
			raw[j] = byte(i*31 + j*7)
		}
		items = append(items, item{ts: uint64(1000 + i), raw: raw})
		if i%3 == 1 {
			items = append(items, item{lost: true, cpu: i - 2, count: uint64(i * 10), kind: "ringbuf-reserve"})
		}
	}
	items = append(items, item{lost: true, cpu: -1, count: 2, kind: "kretprobe-missed"})
	return items
}

func writeItems(t testing.TB, w *Writer, items []item) {
	t.Helper()
	for _, it := range items {
		var err error
		if it.lost {
			err = w.WriteLost(it.cpu, it.count, it.kind)
		} else {
			err = w.WriteRecord(it.ts, it.raw)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func testTrailer() Trailer {
	return Trailer{
		EndUnixNano: 1_700_000_200_000_000_000,
		Counters:    []kstat.NetnsCounters{{Netns: 4026531840, Name: "init", Values: map[string]uint64{"insert_failed": 5}}},
	}
}

// writeCapture returns a complete small capture and what it holds.
func writeCapture(t testing.TB, big bool) ([]byte, []item) {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, testHeader())
	if err != nil {
		t.Fatal(err)
	}
	items := testItems(big)
	writeItems(t, w, items)
	if err := w.Close(testTrailer()); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), items
}

// readAll reads records until an error, checking each against want; it
// returns how many it read and the final error.
func readAll(t testing.TB, r *Reader, want []item) (int, error) {
	t.Helper()
	for i := 0; ; i++ {
		rec, err := r.Next()
		if err != nil {
			return i, err
		}
		if i >= len(want) {
			t.Fatalf("record %d: more records than written: %+v", i, rec)
		}
		w := want[i]
		if w.lost {
			if rec.Type != TypeLost || rec.CPU != w.cpu || rec.Count != w.count || rec.Kind != w.kind || rec.Raw != nil {
				t.Fatalf("record %d: got %+v, want lost %+v", i, rec, w)
			}
		} else if rec.Type != TypeSample || rec.TS != w.ts || !bytes.Equal(rec.Raw, w.raw) || rec.Kind != "" {
			t.Fatalf("record %d: got %v ts %d len %d, want sample ts %d len %d", i, rec.Type, rec.TS, len(rec.Raw), w.ts, len(w.raw))
		}
	}
}

func TestRoundTrip(t *testing.T) {
	data, items := writeCapture(t, true)
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	want := testHeader()
	want.FormatVersion = Version
	if got := r.Header(); !reflect.DeepEqual(got, want) {
		t.Errorf("header:\n got %+v\nwant %+v", got, want)
	}
	if r.ByteOrder().Uint16([]byte{1, 0}) != 1 {
		t.Errorf("byte order: want little-endian on this test machine")
	}
	if r.Trailer() != nil {
		t.Error("Trailer() before the end is not nil")
	}
	n, err := readAll(t, r, items)
	if err != io.EOF {
		t.Fatalf("after %d records: got %v, want io.EOF", n, err)
	}
	if n != len(items) {
		t.Fatalf("read %d records, wrote %d", n, len(items))
	}
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("Next after EOF: %v", err)
	}
	tr := r.Trailer()
	if tr == nil {
		t.Fatal("no trailer")
	}
	wantTr := testTrailer()
	wantTr.Records = uint64(len(items))
	wantTr.Lost = map[string]uint64{}
	for _, it := range items {
		if it.lost {
			wantTr.Lost[it.kind] += it.count
		}
	}
	if !reflect.DeepEqual(*tr, wantTr) {
		t.Errorf("trailer:\n got %+v\nwant %+v", *tr, wantTr)
	}
}

// TestTruncateEverywhere cuts a capture at every byte: the reader must
// return exactly a prefix of the records, then a *TruncatedError (or, when
// the cut is inside the header, a header error), and never panic.
func TestTruncateEverywhere(t *testing.T) {
	data, items := writeCapture(t, false)
	headerEnd := -1
	for cut := 0; cut <= len(data); cut++ {
		r, err := NewReader(bytes.NewReader(data[:cut]))
		if err != nil {
			if headerEnd >= 0 {
				t.Fatalf("cut %d: header error %v after a header was read at a shorter cut", cut, err)
			}
			if cut == 0 && err != ErrEmpty {
				t.Fatalf("cut 0: %v, want ErrEmpty", err)
			}
			if cut > 0 && !errors.Is(err, ErrTruncated) {
				t.Fatalf("cut %d: header error %v, want ErrTruncated", cut, err)
			}
			continue
		}
		if headerEnd < 0 {
			headerEnd = cut
		}
		n, err := readAll(t, r, items)
		if cut == len(data) {
			if err != io.EOF || n != len(items) {
				t.Fatalf("whole file: %d records, %v", n, err)
			}
			continue
		}
		var te *TruncatedError
		if !errors.As(err, &te) {
			t.Fatalf("cut %d: after %d records got %v, want *TruncatedError", cut, n, err)
		}
		if !errors.Is(err, ErrTruncated) || te.Records != uint64(n) || te.Offset+te.Partial != int64(cut) || te.Offset > int64(cut) {
			t.Fatalf("cut %d: %d records, error %+v", cut, n, te)
		}
		if r.Trailer() != nil {
			t.Fatalf("cut %d: trailer present", cut)
		}
		if want := fmt.Sprintf("capture truncated after %d records at byte %d: report covers the valid prefix", n, te.Offset); err.Error() != want {
			t.Fatalf("message %q, want %q", err, want)
		}
	}
	if headerEnd <= preambleSize {
		t.Fatalf("header ended at %d", headerEnd)
	}
}

// TestBitFlips flips every bit of a capture: each flip must be reported as
// bad magic, a version error or corruption, and no record before the error
// may differ from what was written.
func TestBitFlips(t *testing.T) {
	data, items := writeCapture(t, false)
	bad := make([]byte, len(data))
	for i := range len(data) * 8 {
		copy(bad, data)
		bad[i/8] ^= 1 << (i % 8)
		r, err := NewReader(bytes.NewReader(bad))
		if err == nil {
			_, err = readAll(t, r, items)
		}
		var ve *VersionError
		switch {
		case errors.Is(err, ErrCorrupt):
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.Offset > int64(i/8) {
				t.Fatalf("bit %d (byte %d): %v names an offset after the damage", i, i/8, err)
			}
		case errors.Is(err, ErrBadMagic) && i/8 < len(Magic):
		case errors.As(err, &ve) && i/8 >= 8 && i/8 < 10:
		default:
			t.Fatalf("bit %d (byte %d): got %v", i, i/8, err)
		}
	}
}

func TestBadInput(t *testing.T) {
	good, _ := writeCapture(t, false)
	hdrJSON, _ := json.Marshal(Header{FormatVersion: 1, RecordLayout: 1})
	pre := appendPreamble(nil, 1, orderLittle, 1, 0)
	withHeader := appendFrame(bytes.Clone(pre), TypeHeader, nil, hdrJSON)
	trailer := func(n int) []byte {
		js, _ := json.Marshal(Trailer{Records: uint64(n)})
		return appendFrame(nil, TypeTrailer, nil, js)
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	lenHeader := func(n uint32, t RecordType) []byte {
		b := []byte{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24), byte(t)}
		return appendUint32(b, checksum(b))
	}

	tests := []struct {
		name    string
		data    []byte
		atOpen  bool   // error from NewReader, else from Next
		is      error  // errors.Is target, if any
		message string // substring of the error
	}{
		{"empty", nil, true, ErrEmpty, "empty file"},
		{"text", []byte("hello\n"), true, ErrBadMagic, "not a ctprobe capture (bad magic): was it written by ctprobe trace -w?"},
		{"pcap", []byte{0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0}, true, ErrBadMagic, "bad magic"},
		{"magic prefix", []byte("CTPRO"), true, ErrTruncated, "truncated at byte 5"},
		{"newer version", appendPreamble(nil, 3, orderLittle, 1, 0), true, nil,
			"capture format version 3 is newer than this ctprobe supports (1): upgrade ctprobe"},
		{"newer version, short", appendPreamble(nil, 3, orderLittle, 1, 0)[:10], true, nil, "version 3 is newer"},
		{"version 0", appendPreamble(nil, 0, orderLittle, 1, 0), true, nil, "version 0 is invalid"},
		{"bad byte order", appendPreamble(nil, 1, 'X', 1, 0), true, ErrCorrupt, "byte-order mark"},
		{"no header frame", pre, true, ErrTruncated, "header truncated at byte 24"},
		{"non-JSON header", appendFrame(bytes.Clone(pre), TypeHeader, nil, []byte("not json")), true, ErrCorrupt, "header is not valid JSON"},
		{"JSON null header", appendFrame(bytes.Clone(pre), TypeHeader, nil, []byte("null")), true, ErrCorrupt, "format version 0"},
		{"layout mismatch", appendFrame(appendPreamble(nil, 1, orderLittle, 2, 0), TypeHeader, nil, hdrJSON), true, ErrCorrupt, "record layout 1, preamble says 2"},
		{"sample first", appendFrame(bytes.Clone(pre), TypeSample, nil, make([]byte, 8)), true, ErrCorrupt, "first frame is a sample frame"},
		{"huge header length", cat(pre, lenHeader(1<<31, TypeHeader)), true, ErrCorrupt, "exceeds the 1048576-byte limit"},
		{"huge record length", cat(withHeader, lenHeader(MaxPayload+1, TypeSample)), false, ErrCorrupt, fmt.Sprintf("byte %d", len(withHeader))},
		{"max record length, cut", cat(withHeader, lenHeader(MaxPayload, TypeSample), make([]byte, 100)), false, ErrTruncated, fmt.Sprintf("after 0 records at byte %d", len(withHeader))},
		{"unknown type", cat(withHeader, appendFrame(nil, 5, nil, nil), trailer(1)), false, ErrCorrupt, "unknown record type 5"},
		{"short sample", cat(withHeader, appendFrame(nil, TypeSample, nil, make([]byte, 7))), false, ErrCorrupt, "shorter than its 8-byte timestamp"},
		{"short lost", cat(withHeader, appendFrame(nil, TypeLost, nil, make([]byte, 11))), false, ErrCorrupt, "lost record of 11 bytes"},
		{"second header", cat(withHeader, appendFrame(nil, TypeHeader, nil, hdrJSON)), false, ErrCorrupt, "second header"},
		{"bad trailer JSON", cat(withHeader, appendFrame(nil, TypeTrailer, nil, []byte("{"))), false, ErrCorrupt, "trailer is not valid JSON"},
		{"trailer count", cat(withHeader, trailer(2)), false, ErrCorrupt, "trailer counts 2 records but the capture holds 0"},
		{"data after trailer", cat(good, []byte{0}), false, ErrCorrupt, fmt.Sprintf("byte %d", len(good))},
		{"zeros then data", cat(withHeader, make([]byte, 100), []byte{1}), false, ErrCorrupt, "zeros followed by data"},
		{"cut at frame boundary", withHeader, false, ErrTruncated, fmt.Sprintf("after 0 records at byte %d", len(withHeader))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(tc.data))
			if tc.atOpen {
				if err == nil {
					t.Fatalf("NewReader succeeded, want error")
				}
			} else {
				if err != nil {
					t.Fatalf("NewReader: %v", err)
				}
				for err == nil {
					_, err = r.Next()
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %q does not contain %q", err, tc.message)
			}
		})
	}
}

// TestForwardCompatible: unknown JSON fields and optional frame types from
// a newer writer of the same version are skipped.
func TestForwardCompatible(t *testing.T) {
	hdr := []byte(`{"FormatVersion":1,"RecordLayout":1,"Hostname":"h","FutureField":{"a":[1,2]}}`)
	data := appendFrame(appendPreamble(nil, 1, orderLittle, 1, 0), TypeHeader, nil, hdr)
	data = appendFrame(data, TypeSample, nil, []byte{1, 0, 0, 0, 0, 0, 0, 0, 0xaa})
	data = appendFrame(data, 0xff, nil, []byte("future"))
	data = appendFrame(data, TypeTrailer, nil, []byte(`{"Records":2,"Future":true}`))
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if r.Header().Hostname != "h" {
		t.Errorf("header %+v", r.Header())
	}
	rec, err := r.Next()
	if err != nil || rec.TS != 1 || !bytes.Equal(rec.Raw, []byte{0xaa}) {
		t.Fatalf("got %+v, %v", rec, err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("got %v, want io.EOF", err)
	}
}

// TestZeroFilledTail: a crash can leave zeros where the last writes should
// be; that is a truncation, not corruption.
func TestZeroFilledTail(t *testing.T) {
	data, items := writeCapture(t, false)
	cut := len(data) / 2
	var boundary int64
	{
		r, _ := NewReader(bytes.NewReader(data[:cut]))
		_, err := readAll(t, r, items)
		boundary = err.(*TruncatedError).Offset
	}
	padded := append(bytes.Clone(data[:boundary]), make([]byte, 5000)...)
	r, err := NewReader(bytes.NewReader(padded))
	if err != nil {
		t.Fatal(err)
	}
	n, err := readAll(t, r, items)
	var te *TruncatedError
	if !errors.As(err, &te) || te.Offset != boundary || te.Partial != 5000 || te.Records != uint64(n) {
		t.Fatalf("got %d records, %v (%+v), want truncation at %d", n, err, te, boundary)
	}
}

func TestBigEndianMark(t *testing.T) {
	hdr, _ := json.Marshal(Header{FormatVersion: 1})
	data := appendFrame(appendPreamble(nil, 1, orderBig, 0, 0), TypeHeader, nil, hdr)
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if r.ByteOrder().Uint16([]byte{1, 0}) != 256 {
		t.Error("big-endian mark not reported")
	}
}

func TestAllocs(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Header{})
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 312)
	w.WriteRecord(0, raw) // warm the scratch buffer and the timer
	if a := testing.AllocsPerRun(1000, func() { w.WriteRecord(1, raw) }); a > 0 {
		t.Errorf("WriteRecord: %v allocs per record", a)
	}
	w.Close(Trailer{})

	r, err := NewReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	r.Next()
	if a := testing.AllocsPerRun(1000, func() {
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
	}); a > 0 {
		t.Errorf("Next: %v allocs per record", a)
	}
}

// TestGolden pins the version-1 encoding: a capture written by any past
// ctprobe must stay readable, so the bytes must not drift by accident.
// Regenerate with -update only for a deliberate, documented change.
func TestGolden(t *testing.T) {
	path := filepath.Join("testdata", "v1.ctp")
	var buf bytes.Buffer
	w, err := NewWriter(&buf, testHeader())
	if err != nil {
		t.Fatal(err)
	}
	items := testItems(false)
	writeItems(t, w, items)
	if err := w.Close(testTrailer()); err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	golden, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if nativeOrder() == orderLittle && !bytes.Equal(golden, buf.Bytes()) {
		t.Errorf("writer output differs from %s: the version-1 encoding changed", path)
	}
	r, err := NewReader(bytes.NewReader(golden))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := readAll(t, r, items); err != io.EOF || n != len(items) {
		t.Errorf("golden: %d records, %v", n, err)
	}
}

func appendUint32(b []byte, v uint32) []byte {
	return append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}

func TestChecksumIsCRC32C(t *testing.T) {
	// The standard CRC-32C check value, as the spec states.
	if got := checksum([]byte("123456789")); got != 0xE3069283 {
		t.Errorf("checksum = %#x", got)
	}
}

type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

// TestReadError: an I/O error is passed on, not mistaken for truncation.
func TestReadError(t *testing.T) {
	data, items := writeCapture(t, false)
	eio := errors.New("input/output error")
	if _, err := NewReader(&failingReader{data: data[:10], err: eio}); !errors.Is(err, eio) {
		t.Errorf("NewReader: %v", err)
	}
	r, err := NewReader(&failingReader{data: data[:len(data)-3], err: eio})
	if err != nil {
		t.Fatal(err)
	}
	_, err = readAll(t, r, items)
	if !errors.Is(err, eio) || errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), "at byte") {
		t.Errorf("Next: %v", err)
	}
}

// Every sample of a capture whose header declares a record size has that
// size: the writer refuses others, and the reader reports one in a file as
// corruption at its frame, after the records before it.
func TestRecordSize(t *testing.T) {
	h := Header{FormatVersion: 1, RecordLayout: 1, RecordSize: 312}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, h)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{311, 313, 0} {
		if err := w.WriteRecord(0, make([]byte, n)); err == nil || !strings.Contains(err.Error(), "312-byte records") {
			t.Errorf("%d-byte record: %v", n, err)
		}
	}
	if err := w.WriteRecord(0, make([]byte, 312)); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	good := buf.Len()
	for _, n := range []int{313, 4096, 311} {
		data := appendFrame(bytes.Clone(buf.Bytes()), TypeSample, make([]byte, samplePrefix), make([]byte, n))
		r, err := NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Next(); err != nil {
			t.Fatalf("the 312-byte record: %v", err)
		}
		_, err = r.Next()
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.Offset != int64(good) || ce.Records != 1 || !strings.Contains(err.Error(), fmt.Sprintf("sample of %d bytes, but the header declares 312-byte records", n)) {
			t.Errorf("%d-byte sample: %v", n, err)
		}
	}
}

// zeros is an endless stream of zero bytes that counts what was read.
type zeros struct{ read int64 }

func (z *zeros) Read(p []byte) (int, error) {
	clear(p)
	z.read += int64(len(p))
	return len(p), nil
}

// A valid prefix followed by endless zeros (report -r - fed by
// /dev/zero) ends in corruption after a bounded read, with the records
// before it.
func TestEndlessZeros(t *testing.T) {
	data, items := writeCapture(t, false)
	var boundary int64
	{
		r, _ := NewReader(bytes.NewReader(data[:len(data)/2]))
		_, err := readAll(t, r, items)
		boundary = err.(*TruncatedError).Offset
	}
	z := &zeros{}
	r, err := NewReader(io.MultiReader(bytes.NewReader(data[:boundary]), z))
	if err != nil {
		t.Fatal(err)
	}
	n, err := readAll(t, r, items)
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Offset != boundary || ce.Records != uint64(n) || !strings.Contains(err.Error(), "MiB of zeros") {
		t.Fatalf("after %d records: %v, want corruption at %d", n, err, boundary)
	}
	if z.read > maxZeroTail+2*readChunk {
		t.Errorf("read %d bytes of zeros, bound is %d", z.read, maxZeroTail)
	}
}

// Loss totals in the trailer saturate instead of wrapping.
func TestLostTotalsSaturate(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Header{})
	if err != nil {
		t.Fatal(err)
	}
	w.WriteLost(-1, math.MaxUint64, "ringbuf")
	w.WriteLost(-1, 5, "ringbuf")
	w.Close(Trailer{})
	r, err := NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := r.Next(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if got := r.Trailer().Lost["ringbuf"]; got != math.MaxUint64 {
		t.Errorf("trailer's ringbuf total %d, want %d", got, uint64(math.MaxUint64))
	}
}
