package dnsmsg

import "fmt"

// Limits of a name (RFC 1035 §2.3.4): its wire length, the final zero byte
// included, and a label's; and the compression pointers one name may follow.
const (
	maxNameLen  = 255
	maxLabelLen = 63
	maxJumps    = 16
	// MaxNameText is the longest presentation form: \DDD for every byte.
	MaxNameText = maxNameLen * 4
)

// readName appends to dst the presentation form of the name at off in b,
// without the trailing dot (nothing for the root). It returns dst, the
// offset where the question or record goes on after the name (past its
// final zero byte, or past its first compression pointer), and whether the
// name ended inside b; if not, dst holds the labels, and the part of a
// label, that b has.
//
// A pointer must point strictly below the start of the name and below every
// earlier jump, so no loop can form; with the jump and length caps the work
// is bounded whatever b holds.
func readName(dst, b []byte, off int) (_ []byte, next int, complete bool, err error) {
	start := len(dst)
	next = -1
	limit := off // a pointer must point below this
	wire := 1    // wire length so far, the final zero byte included
	jumps := 0
	for off < len(b) {
		l := int(b[off])
		switch l & 0xc0 {
		case 0x00:
			if l == 0 {
				if next < 0 {
					next = off + 1
				}
				return dst, next, true, nil
			}
			wire += 1 + l
			if wire > maxNameLen {
				return dst, 0, false, ErrName
			}
			if len(dst) > start {
				dst = append(dst, '.')
			}
			lab := b[off+1:]
			if len(lab) > l {
				lab = lab[:l]
			}
			dst = appendLabel(dst, lab)
			off += 1 + l
		case 0xc0:
			if off+1 >= len(b) {
				return dst, 0, false, nil
			}
			ptr := (l&0x3f)<<8 | int(b[off+1])
			// Jump targets strictly decrease, so no loop can form.
			if ptr >= limit || jumps >= maxJumps {
				return dst, 0, false, ErrName
			}
			jumps++
			if next < 0 {
				next = off + 2
			}
			limit = ptr
			off = ptr
		default: // 0x40, 0x80: extended and reserved label types
			return dst, 0, false, ErrName
		}
	}
	return dst, 0, false, nil
}

// appendLabel appends one label's bytes in presentation form.
func appendLabel(dst, lab []byte) []byte {
	for _, c := range lab {
		switch {
		case c == '.' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x21 || c > 0x7e:
			dst = append(dst, '\\', '0'+c/100, '0'+c/10%10, '0'+c%10)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// appendName appends the wire form of name, in presentation form (a
// trailing dot is optional; "" and "." are the root), uncompressed.
func appendName(b []byte, name string) ([]byte, error) {
	if name == "" || name == "." {
		return append(b, 0), nil
	}
	start := len(b)
	lenAt := len(b) // the current label's length byte
	b = append(b, 0)
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '.' {
			if b[lenAt] == 0 {
				return nil, fmt.Errorf("dns name %q has an empty label", name)
			}
			if i == len(name)-1 {
				break // the trailing dot
			}
			lenAt = len(b)
			b = append(b, 0)
			continue
		}
		if c == '\\' {
			var err error
			if c, i, err = unescape(name, i); err != nil {
				return nil, err
			}
		}
		if b[lenAt] == maxLabelLen {
			return nil, fmt.Errorf("dns name %q has a label longer than %d bytes", name, maxLabelLen)
		}
		b = append(b, c)
		b[lenAt]++
		if len(b)-start+1 > maxNameLen {
			return nil, fmt.Errorf("dns name %q is longer than %d bytes", name, maxNameLen)
		}
	}
	if b[lenAt] == 0 {
		return nil, fmt.Errorf("dns name %q has an empty label", name)
	}
	return append(b, 0), nil
}

// unescape decodes the escape at name[i] ('\'): \DDD is the byte DDD
// (decimal), \X is X. It returns the byte and the index of the escape's
// last character.
func unescape(name string, i int) (byte, int, error) {
	if i+1 >= len(name) {
		return 0, i, fmt.Errorf("dns name %q ends in a backslash", name)
	}
	if !isDigit(name[i+1]) {
		return name[i+1], i + 1, nil
	}
	if i+3 >= len(name) || !isDigit(name[i+2]) || !isDigit(name[i+3]) {
		return 0, i, fmt.Errorf("dns name %q: a \\DDD escape needs three digits", name)
	}
	v := int(name[i+1]-'0')*100 + int(name[i+2]-'0')*10 + int(name[i+3]-'0')
	if v > 255 {
		return 0, i, fmt.Errorf("dns name %q: escape \\%s is over 255", name, name[i+1:i+4])
	}
	return byte(v), i + 3, nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
