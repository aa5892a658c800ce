// Package rendertest checks ctprobe's output the way a terminal reads it,
// for the tests of every layer that prints strings from outside: the
// renderer, the report pipeline over damaged captures, and a live trace of
// a process with a hostile name.
package rendertest

import (
	"fmt"
	"unicode/utf8"
)

// FirstControl returns a description of the first thing in out that a
// terminal could obey rather than print, or "" if there is none: a C0
// control other than the newline (ESC among them), DEL, a C1 control
// (U+0080 to U+009F in UTF-8, or the bare byte, which an 8-bit terminal
// takes for one: 0x9b is CSI), or any other byte that is not part of
// valid UTF-8.
func FirstControl(out []byte) string {
	for i := 0; i < len(out); {
		r, n := utf8.DecodeRune(out[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			return fmt.Sprintf("byte %#02x at offset %d is not UTF-8", out[i], i)
		case r < 0x20 && r != '\n', r == 0x7f, r >= 0x80 && r <= 0x9f:
			return fmt.Sprintf("control U+%04X at offset %d", r, i)
		}
		i += n
	}
	return ""
}
