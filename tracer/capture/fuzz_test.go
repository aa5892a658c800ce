package capture

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"
)

// FuzzReader feeds arbitrary bytes to the reader: it must never panic,
// never loop, and every outcome must be one of the documented ones.
func FuzzReader(f *testing.F) {
	data, _ := writeCapture(f, false)
	f.Add(data)
	f.Add(data[:len(data)/2])
	f.Add(data[:preambleSize+3])
	f.Add(idleCapture(f))
	if golden, err := os.ReadFile(filepath.Join("testdata", "v1.ctp")); err == nil {
		f.Add(golden)
	}
	f.Add([]byte{})
	f.Add([]byte(Magic))

	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data))
		if err != nil {
			if r != nil {
				t.Fatal("reader returned with an error")
			}
			return
		}
		var records uint64
		var prev int64 = -1
		for {
			rec, err := r.Next()
			if err == io.EOF {
				if r.Trailer() == nil || r.Trailer().Records < records {
					t.Fatalf("EOF with trailer %+v after %d records", r.Trailer(), records)
				}
				break
			}
			if err != nil {
				var te *TruncatedError
				var ce *CorruptError
				switch {
				case errors.As(err, &te):
					if te.Offset+te.Partial != int64(len(data)) || te.Records < records {
						t.Fatalf("truncation %+v in %d bytes after %d records", te, len(data), records)
					}
				case errors.As(err, &ce):
					if ce.Offset < 0 || ce.Offset > int64(len(data)) {
						t.Fatalf("corruption offset %d out of %d bytes", ce.Offset, len(data))
					}
				default:
					t.Fatalf("unexpected error %v", err)
				}
				if _, again := r.Next(); again != err {
					t.Fatalf("error not sticky: %v then %v", err, again)
				}
				if r.Trailer() != nil && !errors.As(err, &ce) {
					t.Fatal("trailer set on a truncated capture")
				}
				break
			}
			records++
			if rec.Offset <= prev || rec.Offset >= int64(len(data)) {
				t.Fatalf("record offset %d after %d in %d bytes", rec.Offset, prev, len(data))
			}
			prev = rec.Offset
			switch rec.Type {
			case TypeSample:
				if len(rec.Raw) > MaxRaw {
					t.Fatalf("sample of %d bytes", len(rec.Raw))
				}
			case TypeLost:
				if rec.CPU < -1 || len(rec.Kind) > MaxKind {
					t.Fatalf("bad lost record %+v", rec)
				}
			case TypeNames, TypeIdle:
			default:
				t.Fatalf("Next returned a %v record", rec.Type)
			}
		}
	})
}

// FuzzRoundTrip checks that whatever is written reads back unchanged.
func FuzzRoundTrip(f *testing.F) {
	f.Add(uint64(0), []byte{}, 0, uint64(0), "ringbuf-reserve")
	f.Add(uint64(1<<63), []byte("\x00\x01\x02"), -1, uint64(7), "entry-missing")
	f.Fuzz(func(t *testing.T, ts uint64, raw []byte, cpu int, count uint64, kind string) {
		var buf bytes.Buffer
		w, err := NewWriter(&buf, Header{Hostname: kind})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteRecord(ts, raw); err != nil {
			t.Fatal(err)
		}
		lostOK := w.WriteLost(cpu, count, kind) == nil
		if err := w.Close(Trailer{}); err != nil {
			t.Fatal(err)
		}
		r, err := NewReader(&buf)
		if err != nil {
			t.Fatal(err)
		}
		// JSON replaces invalid UTF-8, so only valid strings round-trip.
		if utf8.ValidString(kind) && r.Header().Hostname != kind {
			t.Fatalf("hostname %q, want %q", r.Header().Hostname, kind)
		}
		rec, err := r.Next()
		if err != nil || rec.TS != ts || !bytes.Equal(rec.Raw, raw) {
			t.Fatalf("sample: %+v, %v", rec, err)
		}
		if lostOK {
			rec, err = r.Next()
			if err != nil || rec.CPU != cpu || rec.Count != count || rec.Kind != kind {
				t.Fatalf("lost: %+v, %v", rec, err)
			}
		}
		if _, err := r.Next(); err != io.EOF {
			t.Fatalf("end: %v", err)
		}
	})
}
