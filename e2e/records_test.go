package e2e

import (
	"fmt"
	"net/netip"
	"testing"
)

// checkEventRecords checks that every event line of a --all stream is one
// probe's record, whole: the fields of a record torn between two probes
// (one built over another's scratch space) contradict each other here. On
// a preemptible kernel this is what shows that records are built safely.
func checkEventRecords(t *testing.T, raw []string, lines []map[string]any) (checked int) {
	t.Helper()
	bad := 0
	for i, m := range lines {
		if m["kind"] != "event" {
			continue
		}
		checked++
		if why := eventInconsistency(m); why != "" {
			bad++
			if bad <= 5 {
				t.Errorf("record is not one probe's: %s: %s", why, raw[i])
			}
		}
	}
	if bad > 5 {
		t.Errorf("%d inconsistent records in all", bad)
	}
	return checked
}

// tupleOf reads a JSON tuple {proto, src, dst}.
func tupleOf(v any) (proto string, src, dst netip.AddrPort, ok bool) {
	m, isMap := v.(map[string]any)
	if !isMap {
		return "", src, dst, false
	}
	proto, _ = m["proto"].(string)
	s, _ := m["src"].(string)
	d, _ := m["dst"].(string)
	src, err1 := netip.ParseAddrPort(s)
	dst, err2 := netip.ParseAddrPort(d)
	return proto, src, dst, err1 == nil && err2 == nil
}

// eventInconsistency says what in an event line contradicts the rest of it,
// or "".
func eventInconsistency(m map[string]any) string {
	point, _ := m["point"].(string)
	if m["netns"] == float64(0) || m["ct"] == "0x0" || m["ct"] == nil {
		return "no netns or ct"
	}
	if (m["pid"] == float64(0)) != (m["softirq"] == true) {
		return "pid 0 exactly when softirq is set"
	}
	op, osrc, odst, ok1 := tupleOf(m["orig"])
	rp, rsrc, rdst, ok2 := tupleOf(m["reply"])
	if !ok1 || !ok2 || op != rp || osrc.Addr().Is4() != rsrc.Addr().Is4() {
		return "orig and reply are not tuples of one protocol and family"
	}
	_, hasHook := m["hook"]
	if hasHook != (point == "ct_in") {
		return "hook on a point other than ct_in"
	}
	if dns, ok := m["dns"].(map[string]any); ok && dns != nil && odst.Port() != 53 && osrc.Port() != 53 {
		return "a DNS message on a flow that is not port 53"
	}
	icmp := op == "icmp" || op == "icmpv6"
	switch point {
	case "ct_in":
		// At nf_conntrack_in's exit a new entry has had no NAT binding yet:
		// its reply is the inverted original.
		if m["new"] == true && !icmp && (rsrc != odst || rdst != osrc) {
			return "a new entry's reply is not its inverted original"
		}
	case "nat":
		bp, bsrc, bdst, ok := tupleOf(m["before"])
		if !ok || bp != op {
			return "NAT before tuple of another protocol"
		}
		manip := m["manip"]
		if manip != "src" && manip != "dst" {
			return "NAT manip neither src nor dst"
		}
		// A binding rewrites one side: DNAT the reply's source (the
		// endpoint), SNAT the reply's destination; get_unique_tuple's
		// tuples are in ORIGINAL direction, where it is the other way.
		src := manip == "src"
		if m["gut"] == true {
			src = !src
		}
		if !icmp && ((src && rsrc != bsrc) || (!src && rdst != bdst)) {
			return "NAT changed the side its manip does not touch"
		}
	case "confirm":
		drop := m["verdict"] == "drop"
		if (m["result"] == "dropped") != drop {
			return "result and verdict disagree"
		}
		if (m["result"] == "merged") == (m["other_ct"] == m["ct"]) {
			return "merged exactly when the packet carries another ct"
		}
	case "clash":
		if m["dir"] != "orig" && m["dir"] != "reply" {
			return "clash direction neither orig nor reply"
		}
		if m["other_ct"] == m["ct"] {
			return "a ct clashing with itself"
		}
	default:
		return "unknown point"
	}
	return ""
}

// The checker passes the renderer's own event lines (the golden file of
// every kind of event) and fails a record whose fields come from two
// probes.
func TestEventInconsistency(t *testing.T) {
	raw, lines := jsonLines(t, "../tracer/render/testdata/events.jsonl")
	if n := checkEventRecords(t, raw, lines); n == 0 {
		t.Fatal("no events in the golden file")
	}
	for i, m := range lines {
		if m["point"] != "ct_in" || m["new"] != true {
			continue
		}
		torn := map[string]any{}
		for k, v := range m {
			torn[k] = v
		}
		other := lines[(i+1)%len(lines)]["orig"] // another record's tuple
		torn["reply"] = other
		if eventInconsistency(torn) == "" && fmt.Sprint(other) != fmt.Sprint(m["reply"]) {
			t.Errorf("a ct_in with another record's reply tuple passed: %s", raw[i])
		}
		delete(torn, "hook")
		if eventInconsistency(torn) == "" {
			t.Errorf("a ct_in without its hook passed: %s", raw[i])
		}
	}
}
