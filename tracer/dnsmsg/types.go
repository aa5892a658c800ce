package dnsmsg

import "strconv"

// typeMnemonics are the record types a stub resolver asks for, by number
// (RFC 1035, RFC 3596, RFC 2782, RFC 9460).
var typeMnemonics = map[uint16]string{
	1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT",
	28: "AAAA", 33: "SRV", 64: "SVCB", 65: "HTTPS", 255: "ANY",
}

// TypeMnemonic is the mnemonic of a record type ("AAAA"), and whether it is
// one of the types above: a bounded set, fit for a metric label.
func TypeMnemonic(t uint16) (string, bool) {
	m, ok := typeMnemonics[t]
	return m, ok
}

// TypeName names a record type: its mnemonic, or "TYPE" and its number
// (RFC 3597's form) for one without.
func TypeName(t uint16) string {
	if m, ok := typeMnemonics[t]; ok {
		return m
	}
	return "TYPE" + strconv.Itoa(int(t))
}
