package capture

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestWriterDefaults(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Header{RecordLayout: 7})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteLost(0, 4, "x"); err != nil {
		t.Fatal(err)
	}
	// Caller-supplied loss totals win over the writer's sums.
	if err := w.Close(Trailer{Lost: map[string]uint64{"x": 9}}); err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	h := r.Header()
	if h.FormatVersion != Version || h.Arch == "" || h.StartUnixNano == 0 || h.RecordLayout != 7 {
		t.Errorf("defaults not filled: %+v", h)
	}
	if err := h.CheckLayout(7, 0); err != nil {
		t.Error(err)
	}
	if err := h.CheckLayout(8, 0); err == nil || !strings.Contains(err.Error(), "layout 7") {
		t.Errorf("CheckLayout(8): %v", err)
	}
	for {
		if _, err := r.Next(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	tr := r.Trailer()
	if tr.EndUnixNano == 0 || tr.Records != 1 || tr.Lost["x"] != 9 {
		t.Errorf("trailer: %+v", tr)
	}
}

func TestCreateStdout(t *testing.T) {
	var stdout bytes.Buffer
	w, err := createWith("-", testHeader(), CreateOptions{}, &stdout)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("-"); err == nil {
		t.Error(`Create("-") created a file named "-"`)
	}
	writeItems(t, w, testItems(false))
	if err := w.Close(Trailer{}); err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(&stdout)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := readAll(t, r, testItems(false)); err != io.EOF {
		t.Errorf("%d records, %v", n, err)
	}
}

// TestFlushPolicy: the header is on the underlying writer at once; records
// reach it on Flush, after FlushRecords records, or after the interval.
func TestFlushPolicy(t *testing.T) {
	var buf lockedBuffer
	w, err := NewWriter(&buf, testHeader())
	if err != nil {
		t.Fatal(err)
	}
	w.interval = 0 // no timer for the first part
	headerLen := buf.Len()
	if _, err := NewReader(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatalf("header not flushed: %v", err)
	}
	w.WriteRecord(1, []byte{1})
	if buf.Len() != headerLen {
		t.Fatal("record written through before any flush")
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if buf.Len() == headerLen {
		t.Fatal("Flush did not write")
	}
	for i := range FlushRecords - 1 {
		w.WriteRecord(uint64(i), []byte{1})
	}
	before := buf.Len()
	w.WriteRecord(0, []byte{1})
	if buf.Len() == before {
		t.Fatalf("no flush after %d records", FlushRecords)
	}

	w.interval = 20 * time.Millisecond
	before = buf.Len()
	w.WriteRecord(0, []byte{1})
	deadline := time.Now().Add(5 * time.Second)
	for buf.Len() == before {
		if time.Now().After(deadline) {
			t.Fatal("timer did not flush")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := w.Close(Trailer{}); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentFlush exercises Flush from a timer goroutine against
// writes; run with -race.
func TestConcurrentFlush(t *testing.T) {
	var buf lockedBuffer
	w, err := NewWriter(&buf, testHeader())
	if err != nil {
		t.Fatal(err)
	}
	w.interval = time.Millisecond
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
				w.Flush()
			}
		}
	})
	raw := make([]byte, 100)
	for i := range 5000 {
		if err := w.WriteRecord(uint64(i), raw); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	if err := w.Close(Trailer{}); err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		rec, err := r.Next()
		if err == io.EOF {
			if i != 5000 {
				t.Fatalf("%d records", i)
			}
			break
		}
		if err != nil || rec.TS != uint64(i) {
			t.Fatalf("record %d: %+v %v", i, rec, err)
		}
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

// fullDisk accepts limit bytes, then fails like a full disk.
type fullDisk struct {
	bytes.Buffer
	limit int
}

func (f *fullDisk) Write(p []byte) (int, error) {
	room := f.limit - f.Len()
	if len(p) <= room {
		return f.Buffer.Write(p)
	}
	f.Buffer.Write(p[:max(room, 0)])
	return max(room, 0), fmt.Errorf("write: %w", errNoSpace)
}

var errNoSpace = errors.New("no space left on device")

// TestFullDisk: after a write error the writer fails every call with it,
// and what reached the disk reads as a valid, truncated prefix.
func TestFullDisk(t *testing.T) {
	disk := &fullDisk{limit: 3000}
	w, err := NewWriter(disk, testHeader())
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 97)
	var werr error
	for i := 0; werr == nil && i < 100000; i++ {
		raw[0] = byte(i)
		werr = w.WriteRecord(uint64(i), raw)
	}
	if !errors.Is(werr, errNoSpace) {
		t.Fatalf("write error %v", werr)
	}
	if err := w.WriteLost(0, 1, "x"); !errors.Is(err, errNoSpace) {
		t.Errorf("WriteLost after failure: %v", err)
	}
	if err := w.Flush(); !errors.Is(err, errNoSpace) {
		t.Errorf("Flush after failure: %v", err)
	}
	if err := w.Close(Trailer{}); !errors.Is(err, errNoSpace) {
		t.Errorf("Close after failure: %v", err)
	}
	r, err := NewReader(bytes.NewReader(disk.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ; ; n++ {
		rec, err := r.Next()
		if err != nil {
			var te *TruncatedError
			if !errors.As(err, &te) {
				t.Fatalf("got %v, want truncation", err)
			}
			break
		}
		if rec.TS != uint64(n) || rec.Raw[0] != byte(n) {
			t.Fatalf("record %d wrong: %+v", n, rec)
		}
	}
	if n == 0 {
		t.Error("no records survived")
	}
}

func TestWriterRejects(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Header{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteRecord(0, make([]byte, MaxRaw+1)); err == nil {
		t.Error("oversized record accepted")
	}
	if err := w.WriteLost(-2, 1, "x"); err == nil {
		t.Error("cpu -2 accepted")
	}
	if err := w.WriteLost(0, 1, ""); err == nil {
		t.Error("empty kind accepted")
	}
	if err := w.WriteLost(0, 1, strings.Repeat("k", MaxKind+1)); err == nil {
		t.Error("oversized kind accepted")
	}
	// Rejected calls do not poison the writer.
	if err := w.WriteRecord(0, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(Trailer{}); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteRecord(0, nil); err == nil {
		t.Error("write after Close accepted")
	}
	if _, err := NewWriter(&buf, Header{Extra: map[string]string{"x": strings.Repeat("a", MaxPayload)}}); err == nil {
		t.Error("oversized header accepted")
	}
}
