package render

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ctprobe/ctprobe/tracer/dnsmsg"
	"github.com/ctprobe/ctprobe/tracer/event"
)

// The clock of text lines and the time of JSON lines are what
// time.Format writes, for any time a Clock can give (int64 nanoseconds)
// and years of one and five digits, in zones east and west, with offsets
// of odd minutes and seconds; written alone, and one after the other as a
// renderer writes them (its times mostly in the second of the line
// before).
func TestTimesAsFormat(t *testing.T) {
	zones := []*time.Location{time.UTC, time.Local,
		time.FixedZone("east", 5*3600+45*60), time.FixedZone("west", -(3*3600 + 30*60)),
		time.FixedZone("lmt", -(17*60 + 32)), time.FixedZone("sub-minute-west", -30),
		time.FixedZone("sub-minute-east", 59), time.FixedZone("far", 99*3600+59*60), time.FixedZone("decades", 1<<30)}
	ns := []int64{0, 1, -1, math.MaxInt64, math.MinInt64, 1_700_000_000_123_456_789, 1_700_000_000_000_000_000,
		1_700_000_000_100_000_000, 1_700_000_000_000_001_000, 1_700_000_000_999_999_999, 1_700_000_001_000_000_000}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		n := rng.Int64()
		ns = append(ns, n, n+rng.Int64N(1000), n+rng.Int64N(1e9), int64(rng.Uint64()))
	}
	times := []time.Time{time.Date(5, 1, 2, 3, 4, 5, 600, time.UTC), time.Date(12345, 12, 31, 23, 59, 59, 999_999_999, time.UTC)}
	for _, n := range ns {
		times = append(times, time.Unix(0, n))
	}
	for _, loc := range zones {
		var clockSecond, jsonSecond wallSecond // a renderer's, whose zone is loc
		for _, tm := range times {
			tm := tm.In(loc)
			want := tm.Format("15:04:05.000000")
			if got := string(appendClock(nil, tm)); got != want {
				t.Fatalf("%v in %v: clock %q, want %q", tm.UTC(), loc, got, want)
			}
			if got := string(clockSecond.appendClock(nil, tm)); got != want {
				t.Fatalf("%v in %v after other times: clock %q, want %q", tm.UTC(), loc, got, want)
			}
			want = `"` + tm.Format(time.RFC3339Nano) + `"`
			var alone wallSecond
			if got := string(alone.appendJSONTime(nil, tm)); got != want {
				t.Fatalf("%v in %v: JSON time %s, want %s", tm.UTC(), loc, got, want)
			}
			if got := string(jsonSecond.appendJSONTime(nil, tm)); got != want {
				t.Fatalf("%v in %v after other times: JSON time %s, want %s", tm.UTC(), loc, got, want)
			}
		}
	}
}

// The names that appendJSONName writes as they are come out as
// appendJSONString escapes them: there is nothing to escape in any.
func TestJSONNamesNeedNoEscaping(t *testing.T) {
	names := append(statusNames[:], flagNames[:]...)
	for n := range 256 {
		names = append(names, event.Kind(n).String(), event.ProtoName(uint8(n)), HookName(uint8(n)), ctinfoName(uint8(n)))
	}
	for n := range 1 << 16 {
		names = append(names, dnsmsg.TypeName(uint16(n)))
	}
	for _, v := range []uint32{event.VerdictDrop, event.VerdictAccept, 2, 3, math.MaxUint32} {
		names = append(names, verdictJSON(v))
	}
	for _, m := range []int{event.ManipSrc, event.ManipDst} {
		_, json := manipNames(m)
		names = append(names, json)
	}
	for _, verdict := range []uint32{event.VerdictDrop, event.VerdictAccept, 2} {
		for _, status := range []uint64{0, 1 << 12, math.MaxUint64} {
			for _, other := range []uint64{0, 1, 2} {
				names = append(names, confirmResult(&event.Event{Verdict: verdict, CT: 1, OtherCT: other, Status: status}))
			}
		}
	}
	for _, name := range names {
		if got, want := string(appendJSONName(nil, name)), string(appendJSONString(nil, name)); got != want {
			t.Errorf("name %q: written as %s, escaped %s", name, got, want)
		}
	}
}

// Numbers and IPv4 endpoints, which the renderers write by hand, come out
// as strconv and net/netip write them: every power of ten and of two and
// their neighbours, and random values; addresses of every octet length, and
// IPv6 ones (mapped IPv4 too).
func TestNumbersAndEndpointsAsStd(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var vs []uint64
	for p := uint64(1); p != 0 && p <= math.MaxUint64/10; p *= 10 {
		vs = append(vs, p-1, p, p+1)
	}
	for b := range 64 {
		vs = append(vs, 1<<b-1, 1<<b, 1<<b+1)
	}
	vs = append(vs, math.MaxUint64, 1e19, 1e19-1)
	for range 10000 {
		vs = append(vs, rng.Uint64(), rng.Uint64()>>rng.IntN(64))
	}
	for _, v := range vs {
		if got, want := string(appendUint([]byte("x"), v)), "x"+strconv.FormatUint(v, 10); got != want {
			t.Fatalf("appendUint(%d) = %q, want %q", v, got, want)
		}
		if got, want := string(appendHex([]byte("x"), v)), "x0x"+strconv.FormatUint(v, 16); got != want {
			t.Fatalf("appendHex(%d) = %q, want %q", v, got, want)
		}
	}
	addrs := []netip.Addr{netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("255.255.255.255"),
		netip.MustParseAddr("10.9.100.1"), netip.MustParseAddr("::ffff:10.0.0.1"), netip.MustParseAddr("fd00::1"),
		netip.MustParseAddr("fe80::1%eth0")}
	for range 20000 {
		// IPv6 groups of every length, and runs of zero groups of every
		// length in every place.
		var a [16]byte
		for g := range 8 {
			switch rng.IntN(3) {
			case 0:
				binary.BigEndian.PutUint16(a[2*g:], uint16(rng.Uint32())>>(4*rng.IntN(4)))
			case 1:
				binary.BigEndian.PutUint16(a[2*g:], 1)
			}
		}
		addrs = append(addrs, netip.AddrFrom16(a))
	}
	for range 10000 {
		addrs = append(addrs, netip.AddrFrom4([4]byte{byte(rng.IntN(256)), byte(rng.IntN(12)), byte(rng.IntN(100)), byte(rng.IntN(256))}))
	}
	for i, a := range addrs {
		for _, port := range []uint16{0, 9, 10, 99, 100, 999, 1000, 9999, 10000, 65535, uint16(i)} {
			if got, want := string(appendAddrPort([]byte("x"), a, port)), "x"+netip.AddrPortFrom(a, port).String(); got != want {
				t.Fatalf("appendAddrPort(%v, %d) = %q, want %q", a, port, got, want)
			}
		}
	}
}

// Padding writes as many spaces as asked, past the run it copies from too.
func TestAppendSpaces(t *testing.T) {
	for n := -1; n <= 100; n++ {
		if got, want := string(appendSpaces([]byte("x"), n)), "x"+strings.Repeat(" ", max(n, 0)); got != want {
			t.Fatalf("appendSpaces(%d) wrote %d spaces", n, len(got)-1)
		}
	}
}

// An event's status and flags, written a byte at a time from lists made
// beforehand, list the same names as bit by bit: every bit alone, every
// value of each byte, bits past the names, and random sets.
func TestJSONBitListsAsBitByBit(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	vs := []uint64{0, math.MaxUint64}
	for b := range 64 {
		vs = append(vs, 1<<b, 1<<b|1)
	}
	for b := range 256 {
		for i := range 3 {
			vs = append(vs, uint64(b)<<(8*i), uint64(b)<<(8*i)|1<<40)
		}
	}
	for range 10000 {
		vs = append(vs, rng.Uint64(), rng.Uint64()&0xffff, rng.Uint64()&0x3ff)
	}
	for _, c := range []struct {
		lists *jsonBitLists
		names []string
	}{{statusListsJSON, statusNames[:]}, {flagListsJSON, flagNames[:]}} {
		for _, v := range vs {
			if got, want := string(c.lists.append([]byte("x"), v)), "x"+string(appendJSONBitNames(nil, v, c.names)); got != want {
				t.Fatalf("%#x: %s, bit by bit %s", v, got, want)
			}
		}
	}
}

// decimal8's reciprocals of 100 and 10 divide exactly every quarter and
// digit pair it meets, so it writes every v < 1e8 as strconv does: every
// v below a million, every digit pair in every place, random ones.
func TestDecimal8AsStrconv(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var vs []uint32
	for v := range uint32(1e6) {
		vs = append(vs, v)
	}
	for p := uint32(1); p < 1e8; p *= 100 {
		for pair := range uint32(100) {
			vs = append(vs, pair*p, pair*p+p-1, 99_999_999-pair*p)
		}
	}
	for range 100000 {
		vs = append(vs, rng.Uint32N(1e8))
	}
	for _, v := range vs {
		d, n := decimal8(v)
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], d)
		if got, want := fmt.Sprintf("%s/%d", b[:], n), fmt.Sprintf("%08d/%d", v, len(strconv.Itoa(int(v)))); got != want {
			t.Fatalf("decimal8(%d) = %s, want %s", v, got, want)
		}
	}
}

// A payload's hex is hex.AppendEncode's, for every length a payload
// capture has (up to 64 bytes) and every byte value.
func TestHexBytesAsEncodingHex(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	payloads := [][]byte{all}
	for n := range 70 {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		payloads = append(payloads, p)
	}
	for _, p := range payloads {
		if got, want := string(appendHexBytes([]byte("x"), p)), "x"+hex.EncodeToString(p); got != want {
			t.Fatalf("appendHexBytes(%x) = %s", p, got)
		}
	}
}

// plainJSON8 finds any byte that a JSON string cannot hold as it is
// (appendJSONString's test) among eight: each byte value in each place
// among plain ones, and random mixes of both.
func TestPlainJSON8(t *testing.T) {
	plain := func(c byte) bool { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\' }
	rng := rand.New(rand.NewPCG(11, 12))
	var words [][8]byte
	for pos := range 8 {
		for c := range 256 {
			w := [8]byte{'a', 'b', '0', '9', '.', '-', ' ', '~'}
			w[pos] = byte(c)
			words = append(words, w)
		}
	}
	for range 100000 {
		var w [8]byte
		for i := range w {
			w[i] = byte(0x20 + rng.IntN(0x60))
			if rng.IntN(16) == 0 {
				w[i] = byte(rng.IntN(256))
			}
		}
		words = append(words, w)
	}
	for _, w := range words {
		want := true
		for _, c := range w {
			want = want && plain(c)
		}
		if got := plainJSON8(string(w[:])); got != want {
			t.Fatalf("plainJSON8(%q) = %v", w[:], got)
		}
	}
}
