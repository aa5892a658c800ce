package render

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/ctprobe/ctprobe/tracer/event"
)

// Allocation-free building blocks for both formats.

// appendClock writes t as "15:04:05.000000": the time of day with its
// microseconds, cut (not rounded) as time.Format cuts them. It is what
// t.AppendFormat wrote, without parsing a layout for every line: that was
// a quarter of an --all event line's time.
func appendClock(dst []byte, t time.Time) []byte {
	var s wallSecond
	return s.appendClock(dst, t)
}

// wallSecond holds the text of the last second an event line's time fell
// in, so that the next line of the same second writes its fraction alone:
// turning a time into its date and time of day looks its zone up each
// time, and was the most of a line's time. A renderer keeps one per
// format of line (the text's time of day, or JSON's whole time).
type wallSecond struct {
	unix    int64 // the second, since the epoch, when set
	set     bool
	head    [32]byte // `15:04:05` or `"2006-01-02T15:04:05`
	headLen int
	zone    [24]byte // JSON: `Z"` or `+05:30"` (of any int offset)
	zoneLen int
}

// same says whether t falls in the second held, and makes it the second
// held if not (the caller then fills its text in).
func (s *wallSecond) same(t time.Time) bool {
	sec := t.Unix()
	if s.set && s.unix == sec {
		return true
	}
	s.unix, s.set = sec, true
	return false
}

// appendClock writes t as the package function appendClock does.
func (s *wallSecond) appendClock(dst []byte, t time.Time) []byte {
	if !s.same(t) {
		h, m, sec := t.Clock()
		s.headLen = len(appendTriple(s.head[:0], h, 2, m, sec, ':'))
	}
	dst = append(dst, s.head[:s.headLen]...)
	dst = append(dst, '.')
	return appendPadded0(dst, t.Nanosecond()/1000, 6)
}

// appendTriple writes a date or a time of day: "2006-01-02" or
// "15:04:05", the first part width digits wide at least.
func appendTriple(dst []byte, a, width, b, c int, sep byte) []byte {
	dst = appendPadded0(dst, a, width)
	dst = append(dst, sep)
	dst = appendPadded0(dst, b, 2)
	dst = append(dst, sep)
	return appendPadded0(dst, c, 2)
}

// appendPadded0 writes v >= 0 in decimal, with leading zeros to width
// digits at least, eight digits at a time (decimal8).
func appendPadded0(dst []byte, v, width int) []byte {
	return appendDecimal(dst, uint64(v), width)
}

// appendDecimal writes v in decimal, with leading zeros to width digits at
// least: the eight digits below 1e8 with one store, those above first.
func appendDecimal(dst []byte, v uint64, width int) []byte {
	if v >= 1e8 || width > 8 {
		dst = appendDecimal(dst, v/1e8, width-8)
		d, _ := decimal8(uint32(v % 1e8))
		return appendDigits(dst, d, 8)
	}
	d, n := decimal8(uint32(v))
	return appendDigits(dst, d, max(n, width))
}

// appendSpaces writes n spaces (none for n <= 0), a run at a time: a text
// line pads five of its fields.
func appendSpaces(dst []byte, n int) []byte {
	const spaces = "                                "
	for ; n > len(spaces); n -= len(spaces) {
		dst = append(dst, spaces...)
	}
	if n > 0 {
		dst = append(dst, spaces[:n]...)
	}
	return dst
}

// pad appends spaces until the bytes written since start are width columns
// wide (at least one space is not guaranteed: callers add separators).
func pad(dst []byte, start, width int) []byte {
	return appendSpaces(dst, width-utf8.RuneCount(dst[start:]))
}

func appendPadded(dst []byte, s string, width int) []byte {
	start := len(dst)
	dst = append(dst, s...)
	return pad(dst, start, width)
}

// appendColored writes s in colour c (when on), padded to width visible
// columns.
func appendColored(dst []byte, on bool, c, s string, width int) []byte {
	if on && c != "" {
		dst = append(dst, c...)
		dst = append(dst, s...)
		dst = append(dst, ansiReset...)
		return appendSpaces(dst, width-utf8.RuneCountInString(s))
	}
	return appendPadded(dst, s, width)
}

// Numbers are written straight into dst, which grows first if it must,
// eight digits with one store: an event line has a dozen of them, and
// written a digit or two at a time they were a fifth of a JSON line's
// rendering.

// decimal8 is v < 1e8 as eight decimal digits, the first in the lowest
// byte (for a little-endian store), and how many of them v needs (at
// least one). It splits v into two halves, four quarters and eight
// digits, each step at once in every part of a 64-bit word with the
// reciprocals of 100 (10486/2**20, exact for x < 10000) and of 10
// (103/2**10, exact for x < 100), instead of a division per digit pair.
func decimal8(v uint32) (digits uint64, n int) {
	x := uint64(v/10000) | uint64(v%10000)<<32
	hundreds := x * 10486 >> 20 & 0x0000_007f_0000_007f
	x = hundreds | (x-hundreds*100)<<16
	tens := x * 103 >> 10 & 0x000f_000f_000f_000f
	x = tens | (x-tens*10)<<8
	// The leading zeros are the low bytes that are 0.
	n = max(8-bits.TrailingZeros64(x)/8, 1)
	return x | 0x3030_3030_3030_3030, n
}

// hex8 is v as eight hex digits, the first in the lowest byte (for a
// little-endian store): its nibbles spread one to a byte, then each
// turned into its digit at once.
func hex8(v uint32) uint64 {
	x := uint64(v)
	x = (x | x<<16) & 0x0000_ffff_0000_ffff
	x = (x | x<<8) & 0x00ff_00ff_00ff_00ff
	x = (x | x<<4) & 0x0f0f_0f0f_0f0f_0f0f
	// A byte of 10 or more gets 'a'-'0'-10 more than '0' added.
	letters := (x + 0x0606_0606_0606_0606) >> 4 & 0x0101_0101_0101_0101
	return bits.ReverseBytes64(x + 0x3030_3030_3030_3030 + letters*('a'-'0'-10))
}

// appendDigits writes the last n (1 to 8) of the eight digits in d, the
// first in the lowest byte, with one store into room made after dst.
func appendDigits(dst []byte, d uint64, n int) []byte {
	l := len(dst)
	dst = slices.Grow(dst, 8)
	binary.LittleEndian.PutUint64(dst[l:l+8], d>>(8*(8-n)))
	return dst[:l+n]
}

// appendHex writes v as "0x" and its hex digits, as strconv.AppendUint
// with base 16 does after "0x".
func appendHex(dst []byte, v uint64) []byte {
	// Room for every digit and the stores' slack at once: a string of
	// its own (appendHex(nil, ...)) takes one allocation.
	dst = slices.Grow(dst, len("0x")+16)
	dst = append(dst, '0', 'x')
	n := max(bits.Len64(v)+3, 4) / 4
	if n > 8 {
		dst = appendDigits(dst, hex8(uint32(v>>32)), n-8)
		n = 8
	}
	return appendDigits(dst, hex8(uint32(v)), n)
}

// appendHexBytes writes b in hex, as hex.AppendEncode does, four bytes
// with one store (hex8): a DNS message's payload_hex is the longest
// field of a JSON line.
func appendHexBytes(dst []byte, b []byte) []byte {
	for ; len(b) >= 4; b = b[4:] {
		dst = appendDigits(dst, hex8(binary.BigEndian.Uint32(b)), 8)
	}
	for _, c := range b {
		dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return dst
}

// appendUint writes v in decimal, as strconv.AppendUint with base 10.
func appendUint(dst []byte, v uint64) []byte {
	if v < 10 {
		return append(dst, byte('0'+v))
	}
	return appendDecimal(dst, v, 0)
}

// appendMicros writes ns as microseconds with three decimals ("12.345").
func appendMicros(dst []byte, ns uint64) []byte {
	dst = strconv.AppendUint(dst, ns/1000, 10)
	dst = append(dst, '.')
	f := ns % 1000
	if f < 100 {
		dst = append(dst, '0')
	}
	if f < 10 {
		dst = append(dst, '0')
	}
	return strconv.AppendUint(dst, f, 10)
}

// appendComm writes a task name (up to its NUL), escaped: any process may
// name itself anything.
func appendComm(dst []byte, comm []byte) []byte {
	for i, c := range comm {
		if c == 0 {
			comm = comm[:i]
			break
		}
	}
	return appendEscapedBytes(dst, comm)
}

func commBytes(ev *event.Event) []byte {
	for i, c := range ev.Comm {
		if c == 0 {
			return ev.Comm[:i]
		}
	}
	return ev.Comm[:]
}

// appendTask writes "comm[pid/tid]", or "(softirq)" when the event fired in
// softirq context and the task fields belong to whatever was interrupted.
func appendTask(dst []byte, comm []byte, pid, tid uint32, softirq bool) []byte {
	if softirq {
		return append(dst, "(softirq)"...)
	}
	dst = appendComm(dst, comm)
	dst = append(dst, '[')
	dst = appendUint(dst, uint64(pid))
	dst = append(dst, '/')
	dst = appendUint(dst, uint64(tid))
	return append(dst, ']')
}

func isICMP(proto uint8) bool { return proto == 1 || proto == 58 }

// appendEndpoint writes "ip:port" ("[v6]:port"), or "?" for an unset
// address.
func appendEndpoint(dst []byte, a netip.Addr, port uint16) []byte {
	if !a.IsValid() {
		return append(dst, '?')
	}
	return appendAddrPort(dst, a, port)
}

// appendAddrPort writes what netip.AddrPort.AppendTo writes: for IPv4
// without its general path (which cost more than any other field of an
// event line), an octet and its dot at a time from a table.
func appendAddrPort(dst []byte, a netip.Addr, port uint16) []byte {
	if !a.Is4() {
		if a.Is4In6() || a.Zone() != "" {
			return netip.AddrPortFrom(a, port).AppendTo(dst)
		}
		return appendAddr6Port(dst, a, port)
	}
	l := len(dst)
	// Room for four stores of an octet's four bytes.
	dst = slices.Grow(dst, len("255.255.255.255:"))
	b := dst[l : l+len("255.255.255.255:")]
	n := 0
	for _, o := range a.As4() {
		d := &octetsDotted[o]
		binary.LittleEndian.PutUint32(b[n:n+4], d.text)
		n += int(d.len)
	}
	b[n-1] = ':'
	digits, w := decimal8(uint32(port))
	return appendDigits(dst[:l+n], digits, w)
}

// appendAddr6Port writes "[v6]:port" as netip does (RFC 5952: hex
// groups without leading zeros, the first longest run of two or more zero
// groups as "::"), for an address without zone that is not IPv4-mapped,
// with a group's digits in one store: with a tenth of the flows IPv6,
// netip's general path took 7 % of a JSON line's rendering.
func appendAddr6Port(dst []byte, a netip.Addr, port uint16) []byte {
	bytes := a.As16()
	var groups [8]uint16
	for i := range groups {
		groups[i] = binary.BigEndian.Uint16(bytes[2*i:])
	}
	zerosStart, zerosEnd := 8, 8
	for i := 0; i < 8; i++ {
		j := i
		for j < 8 && groups[j] == 0 {
			j++
		}
		if j-i >= 2 && j-i > zerosEnd-zerosStart {
			zerosStart, zerosEnd = i, j
		}
		i = j
	}
	dst = append(dst, '[')
	for i := 0; i < 8; i++ {
		if i == zerosStart {
			dst = append(dst, ':', ':')
			if i = zerosEnd; i == 8 {
				break
			}
		} else if i > 0 {
			dst = append(dst, ':')
		}
		dst = appendDigits(dst, hex8(uint32(groups[i])), max(bits.Len16(groups[i])+3, 4)/4)
	}
	dst = append(dst, ']', ':')
	return appendUint(dst, uint64(port))
}

// octetsDotted is every octet's digits and a dot, in a word for one
// store (the first byte lowest), and how many of its bytes they are.
var octetsDotted = func() (t [256]struct {
	text uint32
	len  uint8
}) {
	for o := range t {
		var text [4]byte
		t[o].len = uint8(copy(text[:], strconv.Itoa(o)+"."))
		t[o].text = binary.LittleEndian.Uint32(text[:])
	}
	return t
}()

// appendTupleEnds writes "src->dst"; ICMP tuples, whose "ports" are the echo
// id and type<<8|code, print as "src->dst id 7 type 8/0".
func appendTupleEnds(dst []byte, t event.Tuple) []byte {
	if isICMP(t.Proto) && t.Src.IsValid() {
		dst = t.Src.AppendTo(dst)
		dst = append(dst, "->"...)
		dst = t.Dst.AppendTo(dst)
		dst = append(dst, " id "...)
		dst = appendUint(dst, uint64(t.SrcPort))
		dst = append(dst, " type "...)
		dst = appendUint(dst, uint64(t.DstPort>>8))
		dst = append(dst, '/')
		return appendUint(dst, uint64(t.DstPort&0xff))
	}
	dst = appendEndpoint(dst, t.Src, t.SrcPort)
	dst = append(dst, "->"...)
	return appendEndpoint(dst, t.Dst, t.DstPort)
}

// appendTuple writes "udp 10.244.1.2:41000->10.96.0.10:53".
func appendTuple(dst []byte, t event.Tuple) []byte {
	dst = append(dst, event.ProtoName(t.Proto)...)
	dst = append(dst, ' ')
	return appendTupleEnds(dst, t)
}

// JSON pieces.

const hexDigits = "0123456789abcdef"

// jsonBitLists writes the names of a bit set's bits as JSON strings,
// comma-separated ("bitN" for a bit without a name): a byte of the set at
// a time, each byte's 256 lists written beforehand. Bit by bit, an event's
// status and flags took a tenth of a JSON line's rendering.
type jsonBitLists struct {
	names []string
	bytes [][256]string // bytes[i][b]: the list of byte i's value b
}

// newJSONBitLists writes the lists of the bytes that names cover.
func newJSONBitLists(names []string) *jsonBitLists {
	l := &jsonBitLists{names: names, bytes: make([][256]string, (len(names)+7)/8)}
	for i := range l.bytes {
		for b := range 256 {
			l.bytes[i][b] = string(appendJSONBitNames(nil, uint64(b)<<(8*i), names))
		}
	}
	return l
}

// append writes v's list.
func (l *jsonBitLists) append(dst []byte, v uint64) []byte {
	listed := false
	for i := range l.bytes {
		b := byte(v >> (8 * i))
		if b == 0 {
			continue
		}
		if listed {
			dst = append(dst, ',')
		}
		dst = append(dst, l.bytes[i][b]...)
		listed = true
	}
	// The bits above the bytes of names (a shift by 64 is 0 in Go).
	if rest := v &^ (1<<(8*len(l.bytes)) - 1); rest != 0 {
		if listed {
			dst = append(dst, ',')
		}
		dst = appendJSONBitNames(dst, rest, l.names)
	}
	return dst
}

// appendJSONBitNames writes the names of v's set bits as jsonBitLists
// does, a bit at a time.
func appendJSONBitNames(dst []byte, v uint64, names []string) []byte {
	for s := v; s != 0; s &= s - 1 {
		bit := bits.TrailingZeros64(s)
		if s != v {
			dst = append(dst, ',')
		}
		if bit < len(names) {
			dst = appendJSONName(dst, names[bit])
		} else {
			dst = append(dst, `"bit`...)
			dst = appendUint(dst, uint64(bit))
			dst = append(dst, '"')
		}
	}
	return dst
}

// appendJSONName writes one of the renderer's own names (a probe point,
// protocol, status bit, verdict, DNS record type: letters, digits, '_',
// '-', '(' and ')') as a JSON string. They need no escaping, so it writes
// them as they are (TestJSONNamesNeedNoEscaping checks every one).
func appendJSONName(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// appendJSONString writes s as a JSON string. Every control character is
// escaped, DEL and the C1 controls (U+0080 to U+009F) too, which JSON
// allows raw but a terminal showing the line would obey; invalid UTF-8
// becomes U+FFFD.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	done := 0 // s[:done] is written; what follows up to i is written as it is
	for i := 0; i < len(s); {
		if i+8 <= len(s) && plainJSON8(s[i:i+8]) {
			i += 8
			continue
		}
		c := s[i]
		if c >= 0x20 && c < 0x7f && c != '"' && c != '\\' {
			i++
			continue
		}
		r, n := rune(c), 1
		if c >= utf8.RuneSelf {
			r, n = utf8.DecodeRuneInString(s[i:])
			if (r != utf8.RuneError || n > 1) && !isC1(r) {
				i += n
				continue
			}
		}
		dst = append(dst, s[done:i]...)
		switch {
		case r == utf8.RuneError:
			dst = append(dst, `\ufffd`...)
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		default: // C0, DEL, C1
			dst = appendJSONControl(dst, r)
		}
		i += n
		done = i
	}
	dst = append(dst, s[done:]...)
	return append(dst, '"')
}

// plainJSON8 says whether the eight bytes of s are all printable ASCII
// other than '"' and '\\', which a JSON string holds as they are: all
// eight at once in a 64-bit word, as a comm or DNS name mostly is. In
// each test, the top bit of the lowest byte that is what it looks for is
// set exactly (no borrow reaches it from below); bytes above it may be
// set wrongly, which only sends the caller to its byte by byte path.
func plainJSON8(s string) bool {
	const ones, highs = 0x0101_0101_0101_0101, 0x8080_8080_8080_8080
	_ = s[7] // one bounds check, and one load for the eight
	w := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
	zero := func(x uint64) uint64 { return (x - ones) &^ x }
	// w: not ASCII; w-0x20: a control (once w is ASCII); w+1: DEL.
	return (w|(w-0x20*ones)|zero(w^'"'*ones)|zero(w^'\\'*ones)|(w+ones))&highs == 0
}

// appendJSONControl writes the escape of a control character below U+0100.
func appendJSONControl(dst []byte, r rune) []byte {
	return append(dst, '\\', 'u', '0', '0', hexDigits[r>>4&0xf], hexDigits[r&0xf])
}

func isC1(r rune) bool { return r >= 0x80 && r <= 0x9f }

// escapeJSONControls escapes what encoding/json leaves raw in the strings
// of a line it wrote: DEL and the C1 controls (UTF-8 0xc2 0x80 to 0xc2
// 0x9f). Its output is valid UTF-8 whose only bytes of that kind are in
// strings, so each can be replaced in place of its string's bytes. It
// returns b unchanged when there is nothing to escape.
func escapeJSONControls(b []byte) []byte {
	i := 0
	for ; i < len(b); i++ {
		if b[i] == 0x7f || b[i] == 0xc2 && i+1 < len(b) && isC1(rune(b[i+1])) {
			break
		}
	}
	if i == len(b) {
		return b
	}
	out := append(make([]byte, 0, len(b)+16), b[:i]...)
	for ; i < len(b); i++ {
		switch {
		case b[i] == 0x7f:
			out = appendJSONControl(out, 0x7f)
		case b[i] == 0xc2 && i+1 < len(b) && isC1(rune(b[i+1])):
			out = appendJSONControl(out, rune(b[i+1]))
			i++
		default:
			out = append(out, b[i])
		}
	}
	return out
}

// appendJSONBytesString is appendJSONString for a byte slice (comm, which
// is not necessarily UTF-8; a DNS name).
func appendJSONBytesString(dst []byte, b []byte) []byte { return appendJSONString(dst, viewString(b)) }

func appendJSONHex(dst []byte, v uint64) []byte {
	dst = append(dst, '"')
	dst = appendHex(dst, v)
	return append(dst, '"')
}

func appendJSONEndpoint(dst []byte, a netip.Addr, port uint16) []byte {
	if !a.IsValid() {
		return append(dst, "null"...)
	}
	dst = append(dst, '"')
	dst = appendAddrPort(dst, a, port)
	return append(dst, '"')
}

// appendJSONTuple writes {"proto":"udp","src":"ip:port","dst":"ip:port"}, or
// null for a tuple with no addresses.
func appendJSONTuple(dst []byte, t event.Tuple) []byte {
	if !t.Src.IsValid() && !t.Dst.IsValid() {
		return append(dst, "null"...)
	}
	dst = append(dst, `{"proto":`...)
	dst = appendJSONName(dst, event.ProtoName(t.Proto))
	dst = append(dst, `,"src":`...)
	dst = appendJSONEndpoint(dst, t.Src, t.SrcPort)
	dst = append(dst, `,"dst":`...)
	dst = appendJSONEndpoint(dst, t.Dst, t.DstPort)
	return append(dst, '}')
}

// appendJSONTime writes t as a JSON string in time.RFC3339Nano's form:
// the fraction without its trailing zeros (none for a whole second), "Z"
// for UTC, else the offset in hours and minutes. It is what t.AppendFormat
// wrote, without parsing the layout for every event, for any year from 0
// on (a Clock's times, int64 nanoseconds, lie between 1677 and 2262).
func (s *wallSecond) appendJSONTime(dst []byte, t time.Time) []byte {
	if !s.same(t) {
		s.setJSON(t)
	}
	dst = append(dst, s.head[:s.headLen]...)
	if ns := t.Nanosecond(); ns != 0 {
		digits := 9
		for ; ns%10 == 0; ns /= 10 {
			digits--
		}
		dst = append(dst, '.')
		dst = appendPadded0(dst, ns, digits)
	}
	return append(dst, s.zone[:s.zoneLen]...)
}

// setJSON writes the parts of appendJSONTime's string that the second
// decides: the date and time of day, and the zone.
func (s *wallSecond) setJSON(t time.Time) {
	head := append(s.head[:0], '"')
	year, month, day := t.Date()
	head = appendTriple(head, year, 4, int(month), day, '-')
	head = append(head, 'T')
	h, m, sec := t.Clock()
	s.headLen = len(appendTriple(head, h, 2, m, sec, ':'))
	// As AppendFormat: whole minutes, their sign (an offset of less than a
	// minute west is "+00:00").
	zone := s.zone[:0]
	_, offset := t.Zone()
	switch minutes := offset / 60; {
	case offset == 0:
		zone = append(zone, 'Z')
	case minutes < 0:
		zone = append(zone, '-')
		zone = appendZone(zone, -minutes)
	default:
		zone = append(zone, '+')
		zone = appendZone(zone, minutes)
	}
	s.zoneLen = len(append(zone, '"'))
}

// appendZone writes an offset of minutes as hh:mm.
func appendZone(dst []byte, minutes int) []byte {
	dst = appendPadded0(dst, minutes/60, 2)
	dst = append(dst, ':')
	return appendPadded0(dst, minutes%60, 2)
}

func appendJSONBool(dst []byte, b bool) []byte {
	if b {
		return append(dst, "true"...)
	}
	return append(dst, "false"...)
}
