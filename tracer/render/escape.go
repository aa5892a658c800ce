package render

import (
	"unicode"
	"unicode/utf8"
	"unsafe"
)

// Text output prints strings that ctprobe does not control: process names
// (any process may name itself anything, prctl(PR_SET_NAME)), DNS names
// from packets, and every string of a capture file from another machine
// (loss kinds, the attach plan, namespace and counter names). ctprobe runs
// as root, so such a string must never reach root's terminal as a control
// sequence: every one goes through appendEscaped. JSON output escapes them
// as JSON instead (appendJSONString, escapeJSONControls).

// appendEscaped appends s with each byte that is not part of printable text
// written as \xNN: C0 controls (ESC among them), DEL, C1 controls (the
// 8-bit CSI 0x9b, and U+0080 to U+009F in UTF-8), other characters that do
// not print (bidi overrides and other format characters, separators other
// than the ASCII space, private use, unassigned) and invalid UTF-8.
// Printable UTF-8, such as names with accents, is kept as it is, and so is
// a backslash: the escapes keep bytes off the terminal and are not meant to
// be decoded back (the JSON output carries the exact name).
func appendEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			dst = append(dst, c)
			i++
			continue
		}
		n := 1
		if c >= utf8.RuneSelf {
			var r rune
			r, n = utf8.DecodeRuneInString(s[i:])
			if (r != utf8.RuneError || n > 1) && unicode.IsPrint(r) {
				dst = append(dst, s[i:i+n]...)
				i += n
				continue
			}
		}
		for _, b := range []byte(s[i : i+n]) {
			dst = append(dst, '\\', 'x', hexDigits[b>>4], hexDigits[b&0xf])
		}
		i += n
	}
	return dst
}

// appendEscapedBytes is appendEscaped for a byte slice (a task's comm).
func appendEscapedBytes(dst []byte, b []byte) []byte { return appendEscaped(dst, viewString(b)) }

// viewString views b as a string without copying it, for a call that
// reads the string and keeps nothing of it.
func viewString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// Escape returns s as text output prints it (appendEscaped): for messages
// that quote outside strings, such as an error naming a capture's fields.
func Escape(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			return string(appendEscaped(make([]byte, 0, len(s)+8), s))
		}
	}
	return s
}
