package render

import (
	"github.com/ctprobe/ctprobe/tracer/encap"
	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/incident"
)

// Finding writes a finding block followed by a blank line:
//
//	12:00:03.123456 finding tunnel-double-snat — netns 4026532201
//	12:00:03.123506 finding conntrack-chain-too-long — pid 4242 ctlab [default/client-a/lookup] — netns 4026532201 (cni-4b1f0c2e)
//	  why    VXLAN traffic from this host source-NATed: ...
//	  flow   ct 0xffff888004a1b300  udp 192.168.100.1:41234->192.168.100.2:4789  reply 192.168.100.2:4789->192.168.100.1:61234
//	  inner  VXLAN VNI 42: udp 10.244.255.1:40000 → 10.244.2.1:53
//	  fix    do not masquerade the tunnel's own packets: ...
func (t *Text) Finding(f *incident.Finding) error {
	return t.write(func(b []byte) []byte { return appendFinding(appendNode(b, t.opt.Node), f, &t.opt) })
}

// appendFinding writes a finding; its strings go through appendEscaped, as
// a capture from another machine may hold anything.
func appendFinding(dst []byte, f *incident.Finding, opt *Options) []byte {
	p := &f.Flow
	dst = appendClock(dst, opt.Clock.Time(f.Time))
	dst = append(dst, ' ')
	dst = appendColored(dst, opt.Color, ansiYellow, "finding "+Escape(f.ID), 0)
	if p.Task {
		dst = appendPIDComm(dst, p)
	}
	dst = appendBracketedNames(dst, &p.Names)
	dst = append(dst, " — netns "...)
	dst = appendUint(dst, uint64(p.Netns))
	dst = appendNetnsName(dst, &p.Names)
	dst = append(dst, "\n  why    "...)
	dst = appendEscaped(dst, f.Reason)
	dst = append(dst, "\n  flow   "...)
	dst = appendFlow(dst, p)
	if f.Inner.Valid {
		dst = append(dst, "\n  inner  "...)
		dst = appendEscaped(dst, f.Inner.String())
	}
	dst = append(dst, "\n  fix    "...)
	dst = appendEscaped(dst, f.Mitigation)
	return append(dst, "\n\n"...)
}

type jsonInner struct {
	Tunnel string     `json:"tunnel"`
	VNI    uint32     `json:"vni"`
	Flow   *jsonTuple `json:"flow"`
	// Ports: the capture reached the inner ports (otherwise flow has
	// addresses only).
	Ports bool `json:"ports"`
}

type jsonFinding struct {
	Schema     int         `json:"schema"`
	Kind       string      `json:"kind"`
	Node       string      `json:"node,omitempty"`
	Time       string      `json:"time"`
	KtimeNS    uint64      `json:"ktime_ns"`
	ID         string      `json:"id"`
	Netns      uint32      `json:"netns"`
	Reason     string      `json:"reason"`
	Mitigation string      `json:"mitigation"`
	Flow       *jsonPacket `json:"flow"`
	Inner      *jsonInner  `json:"inner"`
}

// Finding writes a "kind":"finding" line.
func (j *JSON) Finding(f *incident.Finding) error {
	v := findingJSON(f, j.opt.Clock)
	v.Node = j.opt.Node
	return j.encode(v)
}

func findingJSON(f *incident.Finding, c Clock) jsonFinding {
	base := f.Time
	if len(f.Flow.Timeline) > 0 {
		base = f.Flow.Timeline[0].Time
	}
	v := jsonFinding{
		Schema: SchemaVersion, Kind: "finding", Time: rfc3339(c.Time(f.Time)), KtimeNS: f.Time,
		ID: f.ID, Netns: f.Flow.Netns, Reason: f.Reason, Mitigation: f.Mitigation,
		Flow: packetJSON(&f.Flow, false, &incident.Incident{}, base),
	}
	if in := &f.Inner; in.Valid {
		v.Inner = &jsonInner{Tunnel: in.Kind.String(), VNI: in.VNI, Ports: in.HasPorts,
			Flow: tupleJSON(innerTuple(in))}
	}
	return v
}

func innerTuple(in *encap.Flow) event.Tuple {
	return event.Tuple{Src: in.Src, Dst: in.Dst, SrcPort: in.SrcPort, DstPort: in.DstPort, Proto: in.Proto}
}
