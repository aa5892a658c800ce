package render

import (
	"github.com/ctprobe/ctprobe/tracer/dnsmsg"
)

// DNS payloads of CT_IN events are parsed by tracer/dnsmsg, the parser the
// correlator uses for incident.DNSQuery, so that event lines and incidents
// name a query the same way. An event line's name goes through a buffer on
// the stack (dnsmsg.AppendParse): a line costs no allocation.

// appendDNSName writes a name as dnsmsg gives it (its presentation form
// escapes every byte outside printable ASCII already; appendEscaped keeps
// that true of any name), with "…" when the capture cut it short.
func appendDNSName(dst []byte, name string, truncated bool) []byte {
	dst = appendEscaped(dst, name)
	if truncated {
		dst = append(dst, "…"...)
	}
	return dst
}

// appendDNSText writes a CT_IN payload as tcpdump does:
// " dns 0x1234 A? lab.example" for a query, " dns 0x1234 A lab.example (response)"
// for a response. It writes nothing when the payload is not DNS.
func appendDNSText(dst []byte, payload []byte) []byte {
	var buf [dnsmsg.MaxNameText]byte
	q, name, err := dnsmsg.AppendParse(buf[:0], payload)
	if err != nil {
		return dst
	}
	dst = append(dst, " dns "...)
	dst = appendHex(dst, uint64(q.ID))
	dst = append(dst, ' ')
	if q.HasType {
		dst = append(dst, dnsmsg.TypeName(q.Type)...)
	} else {
		dst = append(dst, '?')
	}
	if !q.Response {
		dst = append(dst, '?')
	}
	dst = append(dst, ' ')
	dst = appendDNSName(dst, viewString(name), q.Truncated && !q.HasType)
	if q.Response {
		dst = append(dst, " (response)"...)
	}
	return dst
}

// appendDNSJSON writes the ,"dns":{...} member of an event, or nothing.
func appendDNSJSON(dst []byte, payload []byte) []byte {
	var buf [dnsmsg.MaxNameText]byte
	q, name, err := dnsmsg.AppendParse(buf[:0], payload)
	if err != nil {
		return dst
	}
	dst = append(dst, `,"dns":{"id":`...)
	dst = appendUint(dst, uint64(q.ID))
	dst = append(dst, `,"type":`...)
	if q.HasType {
		dst = appendJSONName(dst, dnsmsg.TypeName(q.Type))
		dst = append(dst, `,"qtype":`...)
		dst = appendUint(dst, uint64(q.Type))
	} else {
		dst = append(dst, `null,"qtype":null`...)
	}
	dst = append(dst, `,"name":`...)
	dst = appendJSONBytesString(dst, name)
	dst = append(dst, `,"response":`...)
	dst = appendJSONBool(dst, q.Response)
	dst = append(dst, `,"truncated":`...)
	dst = appendJSONBool(dst, q.Truncated)
	return append(dst, '}')
}
