package render

import (
	"bytes"
	"encoding/json"
	"io"
	"strconv"
	"time"

	"github.com/ctprobe/ctprobe/tracer/dnsmsg"
	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/loss"
	"github.com/ctprobe/ctprobe/tracer/plan"
	"github.com/ctprobe/ctprobe/tracer/summary"
)

// JSON writes one JSON object per line (docs/json-schema.md). Every line
// has "schema" (SchemaVersion) and "kind".
type JSON struct {
	sink
	opt    Options
	second wallSecond // of the last event line
}

// NewJSON returns a JSON-lines renderer writing to w. Only opt.Clock and
// opt.Now are used.
func NewJSON(w io.Writer, opt Options) *JSON {
	return &JSON{sink: sink{w: w}, opt: opt}
}

// Header writes a "kind":"header" line, the first of a stream.
func (j *JSON) Header(h *Header) error {
	return j.encode(jsonHeader{Schema: SchemaVersion, Kind: "header", Node: j.opt.Node, Version: h.Version, Kernel: h.Kernel, Hostname: h.Hostname,
		Mode: h.Mode, Start: rfc3339(j.opt.Clock.in(h.Start)), Capture: h.Capture})
}

// Event writes a "kind":"event" line (held until Flush).
func (j *JSON) Event(ev *event.Event) error {
	return j.hold(func(b []byte) []byte { return appendEventJSON(b, ev, j.opt.Clock, j.opt.Node, &j.second) })
}

// Incident writes a "kind":"incident" line.
func (j *JSON) Incident(inc *incident.Incident) error {
	v := incidentJSON(inc, j.opt.Clock)
	v.Node = j.opt.Node
	return j.encode(v)
}

// Lost writes a "kind":"lost" line.
func (j *JSON) Lost(l loss.Count) error {
	v := jsonLost{Schema: SchemaVersion, Kind: "lost", Node: j.opt.Node, Time: rfc3339(j.opt.now()), Source: string(l.Kind), Count: l.Count}
	if l.CPU >= 0 {
		cpu := l.CPU
		v.CPU = &cpu
	}
	return j.encode(v)
}

// Warning writes a "kind":"warning" line.
func (j *JSON) Warning(msg string) error {
	return j.encode(jsonWarning{Schema: SchemaVersion, Kind: "warning", Node: j.opt.Node, Time: rfc3339(j.opt.now()), Message: msg})
}

// Plan writes a "kind":"plan" line.
func (j *JSON) Plan(p []plan.Entry) error {
	v := jsonPlan{Schema: SchemaVersion, Kind: "plan", Node: j.opt.Node, Time: rfc3339(j.opt.now()), Points: []jsonPlanEntry{}}
	for _, e := range p {
		v.Points = append(v.Points, jsonPlanEntryOf(e))
	}
	return j.encode(v)
}

// Summary writes a "kind":"summary" line.
func (j *JSON) Summary(s *summary.Summary) error {
	return j.encode(summaryJSON(s, &j.opt))
}

// encode marshals v on one line without HTML escaping, with the controls
// that encoding/json leaves raw escaped (escapeJSONControls).
func (j *JSON) encode(v any) error {
	var err error
	werr := j.write(func(b []byte) []byte {
		held := len(b) // event lines before this one
		buf := bytes.NewBuffer(b)
		enc := json.NewEncoder(buf)
		enc.SetEscapeHTML(false)
		if err = enc.Encode(v); err != nil {
			return b
		}
		line := buf.Bytes()
		return append(line[:held], escapeJSONControls(line[held:])...)
	})
	if err != nil {
		return err
	}
	return werr
}

// AppendEventJSON appends the JSON line of one event, newline included. It
// does not allocate when dst has room.
func AppendEventJSON(dst []byte, ev *event.Event, c Clock) []byte {
	var second wallSecond
	return appendEventJSON(dst, ev, c, "", &second)
}

// appendEventJSON is AppendEventJSON with the node the event comes from
// ("": none), and the renderer's last second.
func appendEventJSON(dst []byte, ev *event.Event, c Clock, node string, second *wallSecond) []byte {
	dst = append(dst, `{"schema":`...)
	dst = appendUint(dst, SchemaVersion)
	dst = append(dst, `,"kind":"event"`...)
	if node != "" {
		dst = append(dst, `,"node":`...)
		dst = appendJSONString(dst, node)
	}
	dst = append(dst, `,"time":`...)
	dst = second.appendJSONTime(dst, c.Time(ev.Time))
	dst = append(dst, `,"ktime_ns":`...)
	dst = appendUint(dst, ev.Time)
	dst = append(dst, `,"point":`...)
	dst = appendJSONName(dst, ev.Kind.String())
	dst = append(dst, `,"cpu":`...)
	dst = appendUint(dst, uint64(ev.CPU))
	dst = append(dst, `,"pid":`...)
	dst = appendUint(dst, uint64(ev.PID))
	dst = append(dst, `,"tid":`...)
	dst = appendUint(dst, uint64(ev.TID))
	dst = append(dst, `,"comm":`...)
	dst = appendJSONBytesString(dst, commBytes(ev))
	dst = append(dst, `,"cgroup":`...)
	dst = appendUint(dst, ev.Cgroup)
	dst = append(dst, `,"netns":`...)
	dst = appendUint(dst, uint64(ev.Netns))
	dst = append(dst, `,"zone":`...)
	dst = appendUint(dst, uint64(ev.Zone))
	dst = append(dst, `,"mark":`...)
	dst = appendUint(dst, uint64(ev.Mark))
	dst = append(dst, `,"ct":`...)
	dst = appendJSONHex(dst, ev.CT)
	dst = append(dst, `,"skb":`...)
	dst = appendJSONHex(dst, ev.SKB)
	dst = append(dst, `,"status":`...)
	dst = appendUint(dst, ev.Status)
	dst = append(dst, `,"status_names":[`...)
	dst = statusListsJSON.append(dst, ev.Status)
	dst = append(dst, `],"flags":[`...)
	dst = flagListsJSON.append(dst, uint64(ev.Flags))
	dst = append(dst, `],"softirq":`...)
	dst = appendJSONBool(dst, ev.Flags&event.FlagSoftirqKey != 0)
	dst = append(dst, `,"history":`...)
	dst = appendJSONBool(dst, ev.Flags&event.FlagHistory != 0)
	dst = append(dst, `,"socket":`...)
	if ev.Flags&event.FlagSock != 0 {
		dst = appendJSONSocket(dst, &ev.Sock)
	} else {
		dst = append(dst, "null"...)
	}
	dst = append(dst, `,"orig":`...)
	dst = appendJSONTuple(dst, ev.Orig)
	dst = append(dst, `,"reply":`...)
	dst = appendJSONTuple(dst, ev.Reply)

	switch ev.Kind {
	case event.CTIn:
		dst = append(dst, `,"hook":`...)
		dst = appendJSONName(dst, HookName(ev.Hook))
		dst = append(dst, `,"ctinfo":`...)
		dst = appendJSONName(dst, ctinfoName(ev.CTInfo))
		dst = append(dst, `,"verdict":`...)
		dst = appendJSONName(dst, verdictJSON(ev.Verdict))
		dst = append(dst, `,"new":`...)
		dst = appendJSONBool(dst, ev.Flags&event.FlagNew != 0)
		dst = appendJSONPayload(dst, ev)
	case event.NAT:
		dst = append(dst, `,"manip":`...)
		_, manip := manipNames(int(ev.Aux))
		dst = appendJSONName(dst, manip)
		dst = append(dst, `,"gut":`...)
		dst = appendJSONBool(dst, ev.Flags&event.FlagNATGUT != 0)
		dst = append(dst, `,"changed":`...)
		dst = appendJSONBool(dst, ev.Flags&event.FlagNATChanged != 0)
		dst = append(dst, `,"before":`...)
		dst = appendJSONTuple(dst, ev.Before)
		dst = append(dst, `,"range":`...)
		dst = appendJSONRange(dst, &ev.Range)
	case event.Clash:
		dst = append(dst, `,"other_ct":`...)
		dst = appendJSONHex(dst, ev.OtherCT)
		dst = append(dst, `,"dir":`...)
		if ev.Aux == 1 {
			dst = append(dst, `"reply"`...)
		} else {
			dst = append(dst, `"orig"`...)
		}
	case event.Confirm:
		dst = append(dst, `,"verdict":`...)
		dst = appendJSONName(dst, verdictJSON(ev.Verdict))
		dst = append(dst, `,"ctinfo":`...)
		dst = appendJSONName(dst, ctinfoName(ev.CTInfo))
		dst = append(dst, `,"result":`...)
		dst = appendJSONName(dst, confirmResult(ev))
		dst = append(dst, `,"other_ct":`...)
		dst = appendJSONHex(dst, ev.OtherCT)
		dst = appendJSONPayload(dst, ev)
	}
	return append(dst, "}\n"...)
}

// appendJSONPayload appends the captured start of a UDP payload to or from
// port 53 (ct_in, and confirm's record of a new entry), and its DNS
// question where it parses.
func appendJSONPayload(dst []byte, ev *event.Event) []byte {
	n := min(int(ev.PayloadLen), len(ev.Payload))
	dst = append(dst, `,"payload_len":`...)
	dst = appendUint(dst, uint64(n))
	if n > 0 {
		dst = append(dst, `,"payload_hex":"`...)
		dst = appendHexBytes(dst, ev.Payload[:n])
		dst = append(dst, '"')
		dst = appendDNSJSON(dst, ev.Payload[:n])
	}
	return dst
}

func verdictJSON(v uint32) string {
	switch v {
	case event.VerdictDrop:
		return "drop"
	case event.VerdictAccept:
		return "accept"
	}
	return "verdict" + string(appendUint(nil, uint64(v)))
}

func appendJSONSocket(dst []byte, s *event.Socket) []byte {
	dst = append(dst, `{"cookie":`...)
	dst = appendUint(dst, s.Cookie)
	dst = append(dst, `,"inode":`...)
	dst = appendUint(dst, uint64(s.Inode))
	dst = append(dst, `,"port":`...)
	dst = appendUint(dst, uint64(s.Port))
	dst = append(dst, `,"family":`...)
	dst = appendUint(dst, uint64(s.Family))
	dst = append(dst, `,"state":`...)
	dst = appendUint(dst, uint64(s.State))
	return append(dst, '}')
}

func appendJSONRange(dst []byte, r *event.NATRange) []byte {
	dst = append(dst, `{"min_addr":`...)
	dst = appendJSONAddr(dst, r)
	dst = append(dst, `,"min_port":`...)
	dst = appendUint(dst, uint64(r.MinPort))
	dst = append(dst, `,"max_port":`...)
	dst = appendUint(dst, uint64(r.MaxPort))
	dst = append(dst, `,"flags":`...)
	dst = appendUint(dst, uint64(r.Flags))
	dst = append(dst, `,"flag_names":[`...)
	first := true
	for _, f := range rangeFlagJSON {
		if r.Flags&f.bit != 0 {
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = appendJSONString(dst, f.text)
		}
	}
	return append(dst, "]}"...)
}

// appendJSONAddr writes "min_addr" and "max_addr" values (null when the
// rule did not map addresses).
func appendJSONAddr(dst []byte, r *event.NATRange) []byte {
	one := func(dst []byte, valid bool, a []byte) []byte {
		if !valid {
			return append(dst, "null"...)
		}
		dst = append(dst, '"')
		dst = append(dst, a...)
		return append(dst, '"')
	}
	var tmp [64]byte
	dst = one(dst, r.MinAddr.IsValid(), r.MinAddr.AppendTo(tmp[:0]))
	dst = append(dst, `,"max_addr":`...)
	return one(dst, r.MaxAddr.IsValid(), r.MaxAddr.AppendTo(tmp[:0]))
}

var rangeFlagJSON = [...]struct {
	bit  uint32
	text string
}{
	{event.RangeMapIPs, "map_ips"},
	{event.RangeProtoSpecified, "proto_specified"},
	{event.RangeProtoRandom, "proto_random"},
	{event.RangePersistent, "persistent"},
	{event.RangeProtoRandomFull, "proto_random_fully"},
	{event.RangeProtoOffset, "proto_offset"},
	{event.RangeNetmap, "netmap"},
}

// Incident, lost, warning and plan lines go through encoding/json.

type jsonTuple struct {
	Proto string  `json:"proto"`
	Src   *string `json:"src"`
	Dst   *string `json:"dst"`
}

func tupleJSON(t event.Tuple) *jsonTuple {
	if !t.Src.IsValid() && !t.Dst.IsValid() {
		return nil
	}
	v := &jsonTuple{Proto: event.ProtoName(t.Proto)}
	if t.Src.IsValid() {
		s := t.SrcString()
		v.Src = &s
	}
	if t.Dst.IsValid() {
		s := t.DstString()
		v.Dst = &s
	}
	return v
}

type jsonSocket struct {
	Cookie uint64 `json:"cookie"`
	Inode  uint32 `json:"inode"`
	Port   uint16 `json:"port"`
	Family uint8  `json:"family"`
	State  uint8  `json:"state"`
}

type jsonQuery struct {
	ID        uint16  `json:"id"`
	Type      *string `json:"type"`
	QType     *uint16 `json:"qtype"`
	Name      string  `json:"name"`
	Response  bool    `json:"response"`
	Truncated bool    `json:"truncated"`
}

// jsonStage is one stage of a timeline: the keys of every stage, then
// those of its kind. The embedded pointers of the other kinds are nil, and
// encoding/json leaves a nil embedded struct out; a tuple that is unknown
// is null, never left out.
type jsonStage struct {
	Stage    string  `json:"stage"`
	OffsetUS float64 `json:"offset_us"`
	KtimeNS  uint64  `json:"ktime_ns"`
	CPU      uint32  `json:"cpu"`
	*jsonStageHook
	*jsonStageNAT
	*jsonStageEntry
	*jsonStageClash
	*jsonStageVerdict
}

type jsonStageHook struct {
	Hook string `json:"hook"`
}

type jsonStageNAT struct {
	Manip   string     `json:"manip"`
	Changed bool       `json:"changed"`
	Before  *jsonTuple `json:"before"`
	After   *jsonTuple `json:"after"`
}

// jsonStageEntry is the entry's tuples at ct_in and confirm.
type jsonStageEntry struct {
	Orig  *jsonTuple `json:"orig"`
	Reply *jsonTuple `json:"reply"`
}

type jsonStageClash struct {
	WOrig  *jsonTuple `json:"winner_orig"`
	WReply *jsonTuple `json:"winner_reply"`
}

type jsonStageVerdict struct {
	Verdict string `json:"verdict"`
}

type jsonPacket struct {
	CT             string      `json:"ct"`
	Task           bool        `json:"task"`
	Comm           string      `json:"comm"`
	PID            uint32      `json:"pid"`
	TID            uint32      `json:"tid"`
	CPU            uint32      `json:"cpu"`
	Netns          uint32      `json:"netns"`
	NetnsName      string      `json:"netns_name"`
	Pod            *jsonPod    `json:"pod"`
	Zone           uint16      `json:"zone"`
	Socket         *jsonSocket `json:"socket"`
	Orig           *jsonTuple  `json:"orig"`
	Reply          *jsonTuple  `json:"reply"`
	ReplyBeforeNAT *jsonTuple  `json:"reply_before_nat"`
	NATChanged     bool        `json:"nat_changed"`
	PortMoved      bool        `json:"port_moved"`
	DNS            *jsonQuery  `json:"dns"`
	BornKtimeNS    *uint64     `json:"born_ktime_ns"`
	Timeline       []jsonStage `json:"timeline"`
}

type jsonIncident struct {
	Schema   int    `json:"schema"`
	Kind     string `json:"kind"`
	Node     string `json:"node,omitempty"`
	Time     string `json:"time"`
	KtimeNS  uint64 `json:"ktime_ns"`
	Race     int    `json:"race"`
	RaceName string `json:"race_name"`
	Outcome  string `json:"outcome"`
	Reason   string `json:"reason"`
	// Mitigation: the race table's advice for this race, outcome and NAT
	// binding (incident.Incident.Mitigation).
	Mitigation string      `json:"mitigation"`
	WindowUS   *float64    `json:"window_us"`
	ClashDir   *string     `json:"clash_dir"`
	Netns      uint32      `json:"netns"`
	BaseNS     uint64      `json:"offset_base_ktime_ns"`
	Winner     *jsonPacket `json:"winner"`
	Loser      *jsonPacket `json:"loser"`
}

// micros is ns in µs as the float64 nearest to the decimal "µs.nnn", so
// that encoding/json prints exactly that decimal.
func micros(ns uint64) float64 {
	var tmp [32]byte
	f, _ := strconv.ParseFloat(string(appendMicros(tmp[:0], ns)), 64)
	return f
}

func rfc3339(t time.Time) string { return t.Format(time.RFC3339Nano) }

func incidentJSON(inc *incident.Incident, c Clock) jsonIncident {
	base := firstTime(inc)
	v := jsonIncident{
		Schema:     SchemaVersion,
		Kind:       "incident",
		Time:       rfc3339(c.Time(inc.Time)),
		KtimeNS:    inc.Time,
		Race:       int(inc.Race),
		RaceName:   inc.Race.Name(),
		Outcome:    string(inc.Outcome),
		Reason:     inc.Reason,
		Mitigation: inc.Mitigation,
		Netns:      inc.Loser.Netns,
		BaseNS:     base,
		Loser:      packetJSON(&inc.Loser, false, inc, base),
	}
	if window, known := inc.KnownWindow(); known {
		w := micros(window)
		v.WindowUS = &w
	}
	switch inc.ClashDir {
	case 0, 1:
		d := "orig"
		if inc.ClashDir == 1 {
			d = "reply"
		}
		v.ClashDir = &d
	}
	if inc.HasWinner {
		v.Winner = packetJSON(&inc.Winner, true, inc, base)
	}
	return v
}

func packetJSON(p *incident.Packet, winner bool, inc *incident.Incident, base uint64) *jsonPacket {
	v := &jsonPacket{
		CT:             string(appendHex(nil, p.CT)),
		Task:           p.Task,
		Comm:           p.Comm,
		PID:            p.PID,
		TID:            p.TID,
		CPU:            p.CPU,
		Netns:          p.Netns,
		NetnsName:      p.Names.Netns,
		Pod:            jsonPodOf(&p.Names),
		Zone:           p.Zone,
		Orig:           tupleJSON(p.Orig),
		Reply:          tupleJSON(p.Reply),
		ReplyBeforeNAT: tupleJSON(p.ReplyPre),
		NATChanged:     p.NATChange,
		PortMoved:      p.PortMoved,
		Timeline:       []jsonStage{},
	}
	if p.HasSock {
		v.Socket = &jsonSocket{Cookie: p.Sock.Cookie, Inode: p.Sock.Inode, Port: p.Sock.Port, Family: p.Sock.Family, State: p.Sock.State}
	}
	if p.DNS.Valid {
		v.DNS = &jsonQuery{ID: p.DNS.ID, Name: p.DNS.Name, Response: p.DNS.Response, Truncated: p.DNS.Truncated}
		if p.DNS.Type != 0 {
			t, qt := dnsmsg.TypeName(p.DNS.Type), p.DNS.Type
			v.DNS.Type, v.DNS.QType = &t, &qt
		}
	}
	if p.Born != 0 {
		b := p.Born
		v.BornKtimeNS = &b
	}
	for i := range p.Timeline {
		s := &p.Timeline[i]
		js := jsonStage{Stage: s.Kind.String(), OffsetUS: micros(offsetNS(s.Time, base)), KtimeNS: s.Time, CPU: s.CPU}
		switch s.Kind {
		case event.CTIn:
			js.jsonStageHook = &jsonStageHook{HookName(s.Hook)}
			js.jsonStageEntry = &jsonStageEntry{tupleJSON(s.Before), tupleJSON(s.After)}
		case event.NAT:
			_, manip := manipNames(s.Manip)
			js.jsonStageNAT = &jsonStageNAT{manip, s.Change, tupleJSON(s.Before), tupleJSON(s.After)}
		case event.Clash:
			js.jsonStageClash = &jsonStageClash{tupleJSON(s.Before), tupleJSON(s.After)}
		case event.Confirm:
			js.jsonStageEntry = &jsonStageEntry{tupleJSON(s.Before), tupleJSON(s.After)}
			js.jsonStageVerdict = &jsonStageVerdict{verdictJSON(s.Result)}
		}
		v.Timeline = append(v.Timeline, js)
	}
	return v
}

type jsonHeader struct {
	Schema   int    `json:"schema"`
	Kind     string `json:"kind"`
	Node     string `json:"node,omitempty"`
	Version  string `json:"version"`
	Kernel   string `json:"kernel"`
	Hostname string `json:"hostname"`
	Mode     string `json:"mode"`
	Start    string `json:"start"`
	Capture  bool   `json:"capture"`
}

type jsonLost struct {
	Schema int    `json:"schema"`
	Kind   string `json:"kind"`
	Node   string `json:"node,omitempty"`
	Time   string `json:"time"`
	Source string `json:"source"`
	CPU    *int   `json:"cpu"`
	Count  uint64 `json:"count"`
}

type jsonWarning struct {
	Schema  int    `json:"schema"`
	Kind    string `json:"kind"`
	Node    string `json:"node,omitempty"`
	Time    string `json:"time"`
	Message string `json:"message"`
}

type jsonPlanEntry struct {
	Point    string `json:"point"`
	Function string `json:"function"`
	Mode     string `json:"mode"`
	Status   string `json:"status"`
	Reason   string `json:"reason"`
}

func jsonPlanEntryOf(e plan.Entry) jsonPlanEntry {
	return jsonPlanEntry{Point: e.Point, Function: e.Function, Mode: string(e.Attach), Status: string(e.Status), Reason: e.Reason}
}

type jsonPlan struct {
	Schema int             `json:"schema"`
	Kind   string          `json:"kind"`
	Node   string          `json:"node,omitempty"`
	Time   string          `json:"time"`
	Points []jsonPlanEntry `json:"points"`
}
